"""LandmarkNet: one shared backbone, one regression branch per protocol (paper section IV, Fig. 5).

Cross-protocol Network Training: "all the convolution layers constitute the shared backbone ...
several branches emanate from the final shared feature maps to regress the coordinates vectors
separately ... the sample will only select its corresponding branch for forwarding." A
single-dataset model is the one-branch case; CNT's second stage keeps one branch
(:meth:`LandmarkNet.select`).

Outputs are normalised crop coordinates ``u = (x + 0.5) / S * 2 - 1`` of shape (n, L, 2), read
from each head's flat vector ``[x1, y1, ..., xL, yL]`` (Table I's 2L outputs).
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import Tensor, nn

__all__ = ["LandmarkNet"]


class LandmarkNet(nn.Module):
    """Shared backbone + ``heads[protocol]`` branches.

    Args:
        backbone: maps (N, 3, S, S) images to a feature map (N, C, h, w).
        heads: protocol name -> head mapping the feature map to (n, 2L); each head has ``num_points``.
        model_args: the ``create_model`` keyword arguments that rebuild this architecture
            (set by :func:`~sepbn.models.create_model`; ``None`` for hand-built nets).

    ``forward(x, protocols)``:
        * ``None``: every head on every sample;
        * a ``str``: that head only, on every sample;
        * a sequence of N per-sample names: each head runs on its own rows only; the dict holds
          only the protocols present, each tensor's rows in batch order.

    Returns ``dict[str, Tensor]``: protocol -> (n, L, 2).

    Examples:
        >>> import torch
        >>> from sepbn.models.heads import PooledHead
        >>> net = LandmarkNet(nn.Conv2d(3, 4, 3), nn.ModuleDict({"a": PooledHead(4, 2), "b": PooledHead(4, 3)}))
        >>> out = net(torch.zeros(3, 3, 8, 8), ["b", "a", "b"])
        >>> {k: tuple(v.shape) for k, v in out.items()}
        {'a': (1, 2, 2), 'b': (2, 3, 2)}
    """

    def __init__(self, backbone: nn.Module, heads: nn.ModuleDict, model_args: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not isinstance(heads, nn.ModuleDict) or len(heads) == 0:
            raise ValueError(f"heads must be a non-empty nn.ModuleDict, got {heads!r}")
        for name, head in heads.items():
            if not isinstance(getattr(head, "num_points", None), int):
                raise ValueError(f"head {name!r} lacks an int attribute num_points")
        self.backbone = backbone
        self.heads = heads
        self.model_args = copy.deepcopy(model_args) if model_args is not None else None

    @property
    def output_protocols(self) -> tuple[str, ...]:
        """Names of the protocols this network predicts, in head order."""
        return tuple(self.heads.keys())

    @property
    def num_points(self) -> dict[str, int]:
        """Protocol -> L."""
        return {name: head.num_points for name, head in self.heads.items()}

    def _head(self, name: str, features: Tensor) -> Tensor:
        head = self.heads[name]
        return head(features).unflatten(-1, (head.num_points, 2))

    def _check(self, name: object) -> str:
        if not isinstance(name, str) or name not in self.heads:
            raise ValueError(f"unknown protocol {name!r}; this network predicts {list(self.heads)}")
        return name

    def forward(self, x: Tensor, protocols: str | Sequence[str] | None = None) -> dict[str, Tensor]:
        features = self.backbone(x)
        if protocols is None:
            return {name: self._head(name, features) for name in self.heads}
        if isinstance(protocols, str):
            return {self._check(protocols): self._head(protocols, features)}
        names = [self._check(p) for p in protocols]
        if len(names) != x.shape[0]:
            raise ValueError(f"got {len(names)} per-sample protocols for a batch of {x.shape[0]}")
        out = {}
        for name in self.heads:
            rows = [i for i, p in enumerate(names) if p == name]
            if rows:
                index = torch.tensor(rows, dtype=torch.long, device=features.device)
                out[name] = self._head(name, features.index_select(0, index))
        return out

    def select(self, protocols: str | Sequence[str]) -> "LandmarkNet":
        """A network with only ``protocols``' heads (CNT stage 2: "the redundant branches are
        disconnected"). Shares the backbone and head modules with ``self`` (no copy)."""
        names = [protocols] if isinstance(protocols, str) else list(protocols)
        if not names:
            raise ValueError("select() needs at least one protocol")
        heads = nn.ModuleDict({self._check(n): self.heads[n] for n in names})
        args = None
        if self.model_args is not None:
            args = copy.deepcopy(self.model_args)
            args["protocols"] = names
            if "num_points" in args:
                args["num_points"] = {n: args["num_points"][n] for n in names}
        return LandmarkNet(self.backbone, heads, args)

    def extra_repr(self) -> str:
        return f"protocols={list(self.heads)}"
