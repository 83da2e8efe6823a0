"""Regression heads: one branch per landmark protocol (paper section IV, Fig. 5).

Fig. 5: "to make the shared feature maps adaptive to a specific landmark definition, an
additional convolution layer is applied at the beginning of each branch". The paper gives no
kernel size; we use a 1x1 convolution C -> C followed by LeakyReLU(0.01) (the activation of
Table I). Reasons: the shared map is tiny (2x2 for the Vanilla CNN, 4x4 for ResNeXt-50 at
128 px), the adapter's job is re-weighting channels per protocol, and a 3x3 conv at 2048
channels would add 37.7M parameters per branch. The adapter has no normalisation: in CNT
each head sees only its own rows of a mixed batch, often just a few samples.

Two heads, each predicting the vector ``[x1, y1, ..., xL, yL]`` (2L numbers, Table I):

* :class:`FlattenHead` -- Table I's regressor: Flatten -> Linear(C*h*w, 1024) -> LeakyReLU ->
  Linear(1024, 2L), optionally preceded by the adapter. Used with the Vanilla CNN.
* :class:`PooledHead` -- the torchvision classifiers with the last Linear set to 2L
  (paper section V-D): global average pool -> [Dropout] -> Linear(C, 2L), optionally
  preceded by the adapter. Used with ResNeXt-50 and MobileNetV2.

Beyond the paper, :class:`IntegralHead` (``create_model(..., head="integral")``) reads the points
off the feature map with a spatial prior: one heatmap per point and its soft-argmax (integral
regression, Sun et al. 2018), so a point is where its evidence is, not a function of a flat vector.

Whether a head has the adapter is an explicit argument (``adapter``); see
``sepbn.models.factory.create_model`` for the default (on for multi-protocol CNT models).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["conv_adapter", "FlattenHead", "PooledHead", "IntegralHead", "LEAKY_SLOPE"]

# Table I: "we set the negative slope of LeakyReLU as 1e-2".
LEAKY_SLOPE = 0.01


def conv_adapter(channels: int) -> nn.Sequential:
    """The per-branch "additional convolution layer" of Fig. 5: Conv1x1(C, C) -> LeakyReLU."""
    if channels < 1:
        raise ValueError(f"adapter channels must be >= 1, got {channels}")
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1), nn.LeakyReLU(LEAKY_SLOPE))


def _check_points(num_points: int) -> None:
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")


class FlattenHead(nn.Module):
    """Table I regressor: [adapter] -> Flatten -> Linear(C*h*w, hidden) -> LReLU -> Linear(hidden, 2L).

    Args:
        in_channels: C of the backbone's feature map.
        in_size: (h, w) of the feature map (2x2 for Table I).
        num_points: L.
        hidden: width of the hidden Linear (1024 in Table I).
        adapter: prepend the Fig. 5 conv adapter.

    Shape:
        (N, C, h, w) -> (N, 2L).

    Examples:
        >>> import torch
        >>> FlattenHead(8, (2, 2), num_points=5, hidden=16)(torch.zeros(3, 8, 2, 2)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self, in_channels: int, in_size: tuple[int, int], num_points: int, *, hidden: int = 1024, adapter: bool = False
    ) -> None:
        super().__init__()
        _check_points(num_points)
        h, w = in_size
        if h < 1 or w < 1 or hidden < 1:
            raise ValueError(f"in_size and hidden must be positive, got in_size={in_size}, hidden={hidden}")
        self.num_points = num_points
        self.adapter = conv_adapter(in_channels) if adapter else nn.Identity()
        self.fc1 = nn.Linear(in_channels * h * w, hidden)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.fc2 = nn.Linear(hidden, 2 * num_points)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.adapter(x).flatten(1))))


class PooledHead(nn.Module):
    """torchvision-style classifier set to 2L outputs: [adapter] -> AvgPool -> [Dropout] -> Linear(C, 2L).

    Shape:
        (N, C, h, w) -> (N, 2L) for any h, w.

    Examples:
        >>> import torch
        >>> PooledHead(8, num_points=5, adapter=True)(torch.zeros(3, 8, 4, 4)).shape
        torch.Size([3, 10])
    """

    def __init__(self, in_channels: int, num_points: int, *, dropout: float = 0.0, adapter: bool = False) -> None:
        super().__init__()
        _check_points(num_points)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_points = num_points
        self.adapter = conv_adapter(in_channels) if adapter else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, 2 * num_points)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(self.adapter(x)).flatten(1)))


def _grid(n: int) -> Tensor:
    """Coordinates of ``n`` cells along one side: edge cell centres on the crop edges (-1, +1)."""
    return torch.linspace(-1.0, 1.0, n).mul(n > 1)  # one cell: its centre, 0 (no branch for tracing)


class IntegralHead(nn.Module):
    """Integral regression: [adapter] -> Conv1x1(C, L) -> softmax over the map -> expected (x, y).

    Each point gets a heatmap on the (h, w) feature map; its coordinate is the heatmap's mean
    position, so the head is differentiable and trains with the same coordinate loss as the
    regressors. The grid puts the centres of the edge cells on the crop edges (-1 and +1),
    so points anywhere in the crop are reachable (an expectation never leaves the grid's hull).

    Shape:
        (N, C, h, w) -> (N, 2L) as ``[x1, y1, ..., xL, yL]``, for any h, w.

    Examples:
        >>> import torch
        >>> out = IntegralHead(8, num_points=5)(torch.zeros(3, 8, 4, 4))  # flat heatmaps: the crop's centre
        >>> out.shape, bool(out.abs().max() < 1e-6)
        (torch.Size([3, 10]), True)
    """

    def __init__(self, in_channels: int, num_points: int, *, adapter: bool = False) -> None:
        super().__init__()
        _check_points(num_points)
        self.num_points = num_points
        self.adapter = conv_adapter(in_channels) if adapter else nn.Identity()
        self.logits = nn.Conv2d(in_channels, num_points, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.logits(self.adapter(x))
        n, L, h, w = maps.shape
        prob = maps.flatten(2).softmax(-1).view(n, L, h, w)
        gx = _grid(w).to(prob)
        gy = _grid(h).to(prob)
        xs = (prob.sum(2) * gx).sum(-1)  # marginal over rows, then the mean column
        ys = (prob.sum(3) * gy).sum(-1)
        return torch.stack((xs, ys), -1).flatten(1)
