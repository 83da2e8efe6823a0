"""Multi-process training: torchrun, DistributedDataParallel, and the loop's process-group boundary.

``torchrun --nproc_per_node N -m sepbn train CONFIG`` runs the same loop as one process (paper
section V-A recipe, section IV CNT) on N ranks. The loop only asks a :class:`DistInfo` for
``rank``, ``world_size``, ``is_main`` (rank 0 alone writes logs and checkpoints), ``wrap``,
``branch_weights``, ``global_losses``, ``forward_syncs`` and ``barrier``; single-process training
is ``DistInfo()`` and never touches ``torch.distributed``. Decisions (docs/distributed.md gives the reasons at length):

* Batch: ``train.batch_size`` is per process; the effective batch is ``batch_size * world_size``.
  Every learning rate of the config is for ``optim.lr_reference_batch`` faces (default: one
  process' batch) and is scaled by ``optim.lr_scaling`` = "none" | "linear" | "sqrt" of
  effective / reference (:func:`lr_scale`).
* CNT loss: one branch loss per protocol is the mean over that protocol's rows of the *global*
  batch. Rank r weights its branch mean by ``n_pr * W / N_p`` (``N_p`` all-reduced), so DDP's
  gradient average equals the gradient of the single-process loss on the global batch. The
  logged losses are reduced the same way (:meth:`DistInfo.global_losses`).
* A head whose protocol has no row on a rank gets no gradient there: DDP runs with
  ``find_unused_parameters=True`` when the network has several heads (the set of used heads
  changes from step to step, so a static graph is impossible, and feeding zero-row batches to
  every head would need a mean over zero rows). One graph walk per step is cheap next to the
  backbone. Single-head networks use every parameter every step and skip the walk.
* ``dist.sync_bn``: BN layers and SepBN's inner normalisation become ``nn.SyncBatchNorm`` on GPUs,
  :class:`~sepbn.nn.sync_bn.CPUSyncBatchNorm` on CPUs; the K mapping sets and attentions stay per layer,
  replicated by DDP.
* Validation runs on rank 0 with the unwrapped model (eval mode: no collective); the other ranks
  wait at :meth:`DistInfo.barrier`, which fails after ``dist.timeout_s`` instead of hanging.
* Failures: collectives time out after ``dist.timeout_s``; NCCL gets
  ``TORCH_NCCL_ASYNC_ERROR_HANDLING=1`` (its watchdog aborts a stuck communicator and ends the
  process). :func:`collective_failure` turns the backend's error into one line naming the rank.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import DistConfig, OptimConfig
from ..errors import UserError, rank_tag
from ..nn import BruteForceSepBN2d
from ..nn.sync_bn import convert_sync_batchnorm

__all__ = [
    "DistInfo",
    "DistributedError",
    "init_from_env",
    "shutdown",
    "lr_scale",
    "scaled_optim",
    "collective_failure",
    "rank_tag",
    "LR_SCALING",
]

LR_SCALING = ("none", "linear", "sqrt")


class DistributedError(UserError, RuntimeError):
    """A rank could not start, or waited in vain for the others."""


@dataclass(frozen=True)
class DistInfo:
    """This process' place in the run (``DistInfo()``: one process) and the DDP settings of ``[dist]``.

    ``backend`` is the process group's ("gloo" / "nccl"; "none" without one); ``timeout_s`` bounds
    every wait (collectives and :meth:`barrier`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sync_bn: bool = False
    find_unused_parameters: bool | None = None  # None = True for networks with several heads
    timeout_s: float = 1800.0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def tag(self) -> str:
        return rank_tag(self.rank, self.world_size)

    @property
    def forward_syncs(self) -> bool:
        """True when a training forward pass runs collectives (synchronised BN across ranks): one
        rank alone must not run one (the non-finite loss diagnosis then skips its probe forward)."""
        return self.sync_bn and self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loop calls forward on: ``model`` itself in one process, else DDP around it.

        With ``sync_bn`` the BN layers of ``model`` are converted in place first (same parameter
        objects, same state-dict keys), so the loop keeps saving ``model.state_dict()``.
        """
        if self.world_size == 1:
            return model

        device = next(model.parameters()).device
        if self.sync_bn:  # torch's kernel on GPUs; nn.SyncBatchNorm refuses CPU tensors
            convert = convert_sync_batchnorm if device.type == "cpu" else nn.SyncBatchNorm.convert_sync_batchnorm
            convert(model)
        find_unused = self.find_unused_parameters
        if find_unused is None:  # CNT heads, and brute-force BN branches routed by domain, may sit out a step

            find_unused = len(getattr(model, "heads", ())) > 1 or any(
                isinstance(m, BruteForceSepBN2d) for m in model.modules())
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused,
        )

    def branch_weights(self, counts: Mapping[str, int], protocols: Sequence[str],
                       device: torch.device | str | None = None) -> dict[str, float | torch.Tensor]:
        """Weights of this rank's branch losses: ``n_p * W / N_p`` (1.0 in one process).

        ``counts``: rows per protocol in this rank's batch; ``protocols``: every protocol of the
        network, in the same order on every rank (one all-reduce of their counts per step). With a
        single protocol every rank has the same batch size, so the weight is 1 without communication.
        """
        if self.world_size == 1 or len(protocols) < 2:
            return {p: 1.0 for p in counts}

        local = torch.tensor([float(counts.get(p, 0)) for p in protocols], device=device)
        total = local.clone()
        dist.all_reduce(total)
        weights = local * self.world_size / total.clamp_min(1.0)
        return {p: weights[i] for i, p in enumerate(protocols) if p in counts}

    def global_losses(self, loss: float, losses: Mapping[str, torch.Tensor], weights: Mapping[str, object],
                      protocols: Sequence[str], device: torch.device | str | None = None) -> dict[str, float | str]:
        """The log row's ``loss`` and ``loss/<protocol>`` (its mean over the global batch; "" when no
        rank has the protocol). Several ranks: one all-reduce, so every rank must call it."""
        if self.world_size == 1:
            return {"loss": loss, **{f"loss/{p}": losses[p].item() if p in losses else "" for p in protocols}}

        # rank r's weighted branch loss, averaged over ranks, is the branch mean over the global batch
        values = [loss] + [float(losses[p].detach() * weights[p]) if p in losses else 0.0 for p in protocols]
        values += [float(p in losses) for p in protocols]
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        total = total.tolist()
        n = len(protocols)
        return {"loss": total[0] / self.world_size, **{
            f"loss/{p}": total[1 + i] / self.world_size if total[1 + n + i] else "" for i, p in enumerate(protocols)}}

    def barrier(self, what: str) -> None:
        """Wait for every rank; fail after ``timeout_s`` with a message naming ``what`` was awaited."""
        if self.world_size == 1:
            return

        try:
            if self.backend == "gloo":  # names the ranks that did not arrive
                dist.monitored_barrier(timeout=timedelta(seconds=self.timeout_s))
            elif self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()
        except RuntimeError as e:
            raise DistributedError(
                f"rank {self.rank}/{self.world_size} waited in vain for the other ranks at {what} "
                f"(dist.timeout_s={self.timeout_s:g}): {_first_line(e)}"
            ) from e


def lr_scale(rule: str, effective_batch: int, reference_batch: int) -> float:
    """Factor on every learning rate: 1, effective / reference, or its square root."""
    if rule not in LR_SCALING:
        raise ValueError(f"lr_scaling must be one of {LR_SCALING}, got {rule!r}")
    if effective_batch < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be positive, got {effective_batch} and {reference_batch}")
    ratio = effective_batch / reference_batch
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def scaled_optim(optim: OptimConfig, batch_size: int, world_size: int) -> tuple[OptimConfig, float]:
    """``optim`` with ``lr`` and ``backbone_lr`` scaled for ``world_size`` processes of ``batch_size``,
    and the factor (the loop also scales ``schedule.min_lr`` by it)."""
    scale = lr_scale(optim.lr_scaling, batch_size * world_size, optim.lr_reference_batch or batch_size)
    if scale == 1.0:
        return optim, scale
    backbone = None if optim.backbone_lr is None else optim.backbone_lr * scale
    return replace(optim, lr=optim.lr * scale, backbone_lr=backbone), scale


def init_from_env(cfg: DistConfig, device: str = "auto", env: Mapping[str, str] | None = None) -> DistInfo:
    """The process group of a torchrun worker (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``), or ``DistInfo()`` when ``WORLD_SIZE`` is unset or 1.

    Backend "auto": nccl when the run uses CUDA, gloo otherwise. On CUDA each rank uses
    ``cuda:LOCAL_RANK`` (``train.device`` must be "auto" or "cuda", without an index).
    """
    env = os.environ if env is None else env
    world_size = int(env.get("WORLD_SIZE", "1"))
    common = {"sync_bn": cfg.sync_bn, "find_unused_parameters": cfg.find_unused_parameters,
              "timeout_s": cfg.timeout_s}
    if world_size <= 1:
        return DistInfo(**common)
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in env]
    if missing:
        raise DistributedError(f"WORLD_SIZE={world_size} but {missing} are not set; launch with torchrun")
    rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and ":" in device:
        raise ValueError(f"train.device={device!r}: with torchrun each rank uses cuda:LOCAL_RANK; "
                         "set train.device to 'auto' or 'cuda'")
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise ValueError(f"dist.backend='nccl' needs CUDA, but train.device={device!r}")

    kwargs = {}
    if cuda:
        torch.cuda.set_device(local_rank)
    if backend == "nccl":
        # the watchdog aborts a communicator stuck longer than the timeout and ends the process
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        kwargs["device_id"] = torch.device("cuda", local_rank)
    try:
        dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=cfg.timeout_s),
                                rank=rank, world_size=world_size, **kwargs)
    except (RuntimeError, ValueError) as e:
        raise DistributedError(
            f"rank {rank}/{world_size} could not join the process group at "
            f"{env['MASTER_ADDR']}:{env['MASTER_PORT']} ({backend}): {_first_line(e)}"
        ) from e
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend, **common)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group (if this process made one)."""
    if info.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_BACKEND_WORDS = ("gloo", "nccl", "NCCL", "ProcessGroup", "c10d", "Timed out", "timed out")


def collective_failure(exc: BaseException, info: DistInfo) -> str | None:
    """A one-paragraph message when ``exc`` comes from a collective (a peer died or hangs), else None."""
    if info.world_size == 1:
        return None
    if isinstance(exc, DistributedError):
        return str(exc)
    dist_error = getattr(torch.distributed, "DistError", ())
    if not (isinstance(exc, dist_error) or (isinstance(exc, RuntimeError)
                                            and any(w in str(exc) for w in _BACKEND_WORDS))):
        return None
    return (f"rank {info.rank}/{info.world_size} lost the other ranks during a collective operation: "
            f"another rank stopped (its own error is printed above this line) or did not answer "
            f"within dist.timeout_s={info.timeout_s:g} s. Backend ({info.backend}) said: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
