"""Atomic file output: a crash or kill never leaves a half-written file under its final name.

Every file sepbn writes for a user (checkpoints, annotation files, caches, predictions,
exported models, result JSON) is first written to a temporary name in the same folder, flushed
and fsync'ed, then renamed onto the final name with ``os.replace`` (atomic on POSIX and Windows).
A kill leaves at most a ``.NAME.tmp-PID`` file beside an intact previous version. Standard
library only, so every sub-package may use it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Callable, Iterator

__all__ = ["atomic_path", "atomic_open", "atomic_write", "atomic_write_bytes", "atomic_write_text", "temp_path",
           "publish"]


def _fsync_dir(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name ``path`` is written under (same folder, same suffix for writers that need it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """fsync the finished ``tmp`` and rename it onto ``path`` (for writers that outlive one block)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that wants a file name (h5py, cv2,
    torch.onnx); on success it is fsync'ed and renamed onto ``path``, on error removed."""
    tmp = temp_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing whose file appears under ``path`` only when the block succeeds."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file: mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb") -> Path:
    """Call ``write(f)`` on a temporary file, then rename it onto ``path``; returns ``path``."""
    with atomic_open(path, mode) as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), "wb")


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)
