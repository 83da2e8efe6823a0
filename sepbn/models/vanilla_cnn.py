"""The paper's Vanilla CNN (Table I) with a norm layer chosen per block (Table VI).

Table I (input 128x128x3; LeakyReLU slope 1e-2; max-pool kernel and stride 2)::

    128x128x3     Conv(3x3x64),   BN, LReLU, MAX
    64x64x64      Conv(3x3x128),  BN, LReLU, MAX
    32x32x128     Conv(3x3x256),  BN, LReLU, MAX
    16x16x256     Conv(3x3x512),  BN, LReLU, MAX
    8x8x512       Conv(3x3x1024), BN, LReLU, MAX
    4x4x1024      Conv(3x3x2048), BN, LReLU, MAX
    2x2x2048      Flatten
    8192          Linear(8192, 1024), LReLU
    1024          Linear(1024, 2L)

Block ``i`` (0-based) outputs a map of side ``input_size / 2**(i+1)``: blocks 0..5 are the
columns 64^2, 32^2, 16^2, 8^2, 4^2, 2^2 of Table VI, so SepBN "at resolution 8^2" is block 3.

Decisions the table leaves open: convolutions use padding 1 (keeps the side so each max-pool
halves it, as the table's input sizes require) and no bias (the following norm layer's shift
makes a conv bias redundant). ``width`` scales every channel count and the hidden Linear,
``input_size`` any side >= 64 (six halvings, floored) -- both for fast experiments only; the
defaults reproduce Table I.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .heads import LEAKY_SLOPE, FlattenHead

__all__ = ["TABLE_I_CHANNELS", "TABLE_I_HIDDEN", "NormLayer", "VanillaFeatures", "VanillaCNN", "scale_width"]

TABLE_I_CHANNELS = (64, 128, 256, 512, 1024, 2048)
TABLE_I_HIDDEN = 1024

# A norm layer factory: num_features -> module (nn.BatchNorm2d, a partial of SepBatchNorm2d, ...).
NormLayer = Callable[[int], nn.Module]


def scale_width(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, int(round(channels * width)))


def _per_block(norm_layer: NormLayer | Sequence[NormLayer], n: int) -> list[NormLayer]:
    if callable(norm_layer):
        return [norm_layer] * n
    layers = list(norm_layer)
    if len(layers) != n or not all(callable(f) for f in layers):
        raise ValueError(f"norm_layer must be one callable or a sequence of {n} callables, got {norm_layer!r}")
    return layers


class VanillaFeatures(nn.Module):
    """The six conv blocks of Table I: the shared backbone of a Vanilla-CNN LandmarkNet.

    Args:
        norm_layer: one factory for every block, or a sequence of 6 (one per block, Table VI).
        width: channel multiplier (1.0 = Table I).
        input_size: side of the square input (128 = Table I).
        pools: how many blocks, from the first, end in the 2x max-pool (6 = Table I); the rest keep
            their side, for heads that read a map (``create_model(..., head="integral")`` uses 4).
        top_down: end in a top-down skip (beyond the paper, for ``head="integral_fine"``): the last
            map, reduced by a 1x1 conv to the channels of the last pooling block and upsampled
            (bilinear) to that block's side before its pool, is added to that block's pre-pool map,
            so the output is twice as fine at little cost. Needs ``pools >= 1``.

    Attributes:
        out_channels, out_size: channels and (h, w) of the output map (2048 and (2, 2) for Table I).

    Examples:
        >>> import torch
        >>> f = VanillaFeatures(width=1 / 64, input_size=64)
        >>> f(torch.zeros(2, 3, 64, 64)).shape, f.out_size
        (torch.Size([2, 32, 1, 1]), (1, 1))
    """

    def __init__(
        self,
        norm_layer: NormLayer | Sequence[NormLayer] = nn.BatchNorm2d,
        *,
        width: float = 1.0,
        input_size: int = 128,
        pools: int = len(TABLE_I_CHANNELS),
        top_down: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= pools <= len(TABLE_I_CHANNELS):
            raise ValueError(f"pools must be in [0, {len(TABLE_I_CHANNELS)}], got {pools}")
        if top_down and pools < 1:
            raise ValueError("top_down needs a pooling block (pools >= 1)")
        side = skip_side = input_size
        for _ in range(pools):
            skip_side, side = side, side // 2
        if side < 1:
            raise ValueError(f"input_size must be >= {2 ** pools} ({pools} 2x max-pools), got {input_size}")
        norms = _per_block(norm_layer, len(TABLE_I_CHANNELS))
        blocks = []
        cin = 3
        channels = [scale_width(c, width) for c in TABLE_I_CHANNELS]
        skip_block = pools - 1 if top_down else None
        for i, (cout, norm) in enumerate(zip(channels, norms)):
            pool = nn.MaxPool2d(kernel_size=2, stride=2) if i < pools else nn.Identity()
            layers = [nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False), norm(cout), nn.LeakyReLU(LEAKY_SLOPE)]
            # The skip block's pool stays outside it: its pre-pool map is read, and fusion reorders pools in blocks.
            blocks.append(nn.Sequential(*layers) if i == skip_block else nn.Sequential(*layers, pool))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.skip_block = skip_block
        self.skip_pool = nn.MaxPool2d(kernel_size=2, stride=2) if top_down else None
        self.top_down = nn.Conv2d(cin, channels[pools - 1], kernel_size=1) if top_down else None
        self.out_channels = channels[pools - 1] if top_down else cin
        self.out_size = (skip_side, skip_side) if top_down else (side, side)

    def norm_names(self) -> list[str]:
        """Qualified names (relative to this module) of the norm layer of each block, in block order."""
        return [f"blocks.{i}.1" for i in range(len(self.blocks))]

    def forward(self, x: Tensor) -> Tensor:
        if self.top_down is None:
            return self.blocks(x)
        skip = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.skip_block:
                skip, x = x, self.skip_pool(x)
        coarse = F.interpolate(self.top_down(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return skip + coarse


class VanillaCNN(nn.Module):
    """Table I end to end: :class:`VanillaFeatures` then Flatten -> Linear(8192, 1024) -> LReLU -> Linear(1024, 2L).

    Outputs the flat vector ``[x1, y1, ..., xL, yL]`` (N, 2L). A single-protocol
    :class:`~sepbn.models.LandmarkNet` built by ``create_model("vanilla", [p])`` has exactly
    these layers (and parameter count) and returns them reshaped to (N, L, 2).

    Examples:
        >>> import torch
        >>> VanillaCNN(num_points=5, width=1 / 64, input_size=64)(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_points: int,
        norm_layer: NormLayer | Sequence[NormLayer] = nn.BatchNorm2d,
        *,
        width: float = 1.0,
        input_size: int = 128,
    ) -> None:
        super().__init__()
        self.features = VanillaFeatures(norm_layer, width=width, input_size=input_size)
        self.head = FlattenHead(
            self.features.out_channels,
            self.features.out_size,
            num_points,
            hidden=scale_width(TABLE_I_HIDDEN, width),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
