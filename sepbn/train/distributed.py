"""The process-group boundary of the training loop (issue 7 extends it to torchrun / DDP).

The loop only asks a :class:`DistInfo` for ``rank``, ``world_size`` and ``is_main`` (rank 0
alone writes logs and checkpoints) and calls ``wrap`` on the model; single-process training is
``DistInfo()``. There is no global state: the info is passed explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["DistInfo"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loop calls forward on (DistributedDataParallel when world_size > 1)."""
        if self.world_size > 1:
            raise NotImplementedError("multi-process training arrives with issue 7 (torchrun + DDP)")
        return model
