"""One writer per run folder: an advisory ``fcntl`` lock on ``OUT/.lock``.

Two ``sepbn train`` processes on the same ``--out`` (two terminals, or a study and a hand-started run)
would interleave ``train.csv`` and leave checkpoints of one run beside the other's claims. The first
process takes an exclusive ``flock`` on ``OUT/.lock`` and writes its PID there; a second one is
refused with one line naming the folder and that PID. The operating system releases the lock when
its holder exits or is killed, so a ``kill -9`` never leaves a stale lock (the file stays, unlocked).
Under torchrun rank 0 holds it for all ranks. Where ``fcntl`` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind
    fcntl = None

__all__ = ["RunLock", "RunFolderBusy"]


class RunFolderBusy(UserError):
    """Another process is writing the run folder."""


class RunLock:
    """``with RunLock(out):`` holds ``out``'s lock (``enabled=False``: a rank other than 0, nothing to do)."""

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        self.path = Path(folder) / ".lock"
        self.enabled = enabled and fcntl is not None
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(f"{self.path.parent}: another sepbn process (PID {holder}) is writing this run "
                                "folder; wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None
