"""Stopping a run cleanly: SIGTERM / SIGINT / SIGUSR1, a checkpoint on wall time, a full disk.

A shared cluster preempts jobs with a signal (SLURM: SIGTERM, then SIGKILL after a grace time; or
the signal of ``--signal``), and a user presses Ctrl-C. :class:`StopSignals` turns the first such
signal into a request: the loop finishes the current step, writes a mid-epoch ``last.pt`` and
raises :class:`Preempted` (exit status :data:`EXIT_PREEMPTED` = 75, ``EX_TEMPFAIL``: "try again").
A second Ctrl-C raises ``KeyboardInterrupt`` at once; the atomic writes of :mod:`sepbn.io` leave
the previous checkpoint intact even when it lands in the middle of one. Under torchrun the ranks
agree on the step to stop at with one all-reduce of the flag per step (:meth:`StopSignals.agreed`),
so a signal that reaches one rank only still stops them all together.

:class:`SaveClock` bounds the work a ``kill -9`` can lose: ``train.save_every_minutes`` of wall
time since the last checkpoint triggers a mid-epoch one. :func:`checkpoint_write_failed` turns a
failed checkpoint write (:class:`sepbn.io.WriteError`: a full disk and the like) into one message that
says what to do next.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError

__all__ = ["EXIT_PREEMPTED", "STOP_SIGNALS", "Preempted", "StopSignals", "SaveClock", "CheckpointWriteError",
           "checkpoint_write_failed", "ignore_stop_signals"]

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, n))


class Preempted(UserError):
    """The run stopped on a signal after writing a mid-epoch checkpoint; ``--resume`` continues it."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, signal_name: str, checkpoint: Path, step: int, epoch: int, batch: int) -> None:
        self.signal_name, self.checkpoint, self.step = signal_name, Path(checkpoint), step
        super().__init__(f"{signal_name}: stopped after step {step} (epoch {epoch + 1}, batch {batch}); "
                         f"progress saved in {checkpoint}")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (its message says whether a previous one is left)."""


class StopSignals:
    """Within ``with StopSignals():`` the first stop signal sets :attr:`received` instead of killing
    the process; a second SIGINT raises ``KeyboardInterrupt``. Handlers can only be installed in the
    main thread: elsewhere this does nothing (the default dispositions stay)."""

    def __init__(self, signals: tuple = STOP_SIGNALS, announce: bool = True) -> None:
        self.signals, self.announce = signals, announce
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            if signum == signal.SIGINT:  # the second Ctrl-C: now
                raise KeyboardInterrupt
            return
        self.received = name
        if self.announce:
            print(f"\n{name} received: stopping after this step and saving a checkpoint "
                  f"(Ctrl-C again to quit at once)", file=sys.stderr, flush=True)

    def agreed(self, dist, device: torch.device) -> str | None:
        """The signal every rank acts on, or None: one all-reduce (MAX) of the flag when there are several
        ranks, so all stop at the same step; a rank that got no signal itself reports "SIGTERM (another rank)"."""
        if dist.world_size == 1:
            return self.received
        import torch.distributed as tdist

        flag = torch.tensor([1.0 if self.received else 0.0], device=device)
        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
        if flag.item() == 0:
            return None
        return self.received or "a stop signal on another rank"


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: workers leave stop signals to the main process, so a Ctrl-C or a
    SIGTERM sent to the whole process group does not kill them in the middle of the step being finished."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class SaveClock:
    """``due()`` once ``minutes`` of wall time have passed since the last ``reset()`` (never when minutes <= 0)."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = 60.0 * minutes, clock
        self.last = clock()

    def due(self) -> bool:
        return self.seconds > 0 and self.clock() - self.last >= self.seconds

    def reset(self) -> None:
        self.last = self.clock()


def checkpoint_write_failed(error: OSError, out: Path) -> CheckpointWriteError:
    """The error that stops a run whose checkpoint write failed: the writer's one line (the file, the space
    needed and free, what is left) and what to do next, truthful about whether ``out/last.pt`` exists."""
    last = Path(out) / "last.pt"
    then = (f"make room and resume from {last} with --resume" if last.is_file()
            else "make room and start the run again (there is no last.pt to resume from yet)")
    return CheckpointWriteError(f"{error}; {then}")
