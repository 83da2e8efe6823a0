"""Atomic file output: a crash or kill never leaves a half-written file under its final name.

Every file sepbn writes for a user (checkpoints, annotation files, caches, predictions,
exported models, result JSON) is first written to a temporary name in the same folder, flushed
and fsync'ed, then renamed onto the final name with ``os.replace`` (atomic on POSIX and Windows).
A kill leaves at most a ``.NAME.tmp-PID`` file beside an intact previous version. Standard
library only, so every sub-package may use it.

A failed write (a full disk, a quota, a read-only mount; whichever exception type the underlying
writer raises for it: PyTorch's ``torch.save`` raises ``RuntimeError("... unexpected pos ...")``)
becomes one :class:`WriteError` naming the file, the space needed and the space free; the
temporary is removed and the previous file, if there is one, is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import IO, Any, Callable, Iterator

__all__ = ["atomic_path", "atomic_open", "atomic_write", "atomic_write_bytes", "atomic_write_text", "temp_path",
           "publish", "atomic_folder", "WriteError", "write_failed", "human_size"]

# errors of the write itself; others (a missing input file, an undecodable image) are not the writer's
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)}


class WriteError(OSError):
    """A file could not be written; the previous version (if any) is intact and no temporary is left."""


def human_size(n: float) -> str:
    """``"512 bytes"``, ``"3.4 KiB"``, ``"1.2 GiB"``: never ``"0 MiB"`` for a small file."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _free(path: Path) -> int | None:
    for folder in (path.parent, *path.parents):  # the nearest folder that exists
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def write_failed(path: str | os.PathLike, exc: BaseException, needed: int | None = None,
                 written: int = 0) -> WriteError:
    """The one-line error of a failed write of ``path``: why, the space needed (``needed`` bytes, else more
    than the ``written`` bytes that got through) and free, and whether a previous version is left."""
    path = Path(path)
    free = _free(path)
    space = f"about {human_size(needed)}" if needed else f"more than {human_size(written)}"
    space += "" if free is None else f", {human_size(free)} free"
    full = getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or (
        free is not None and needed is not None and free < needed)
    if full:
        why = "no space left on the device"
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror
    else:
        line = (str(exc).strip().splitlines() or [""])[0]
        why = f"{type(exc).__name__}: {line[:100] + '...' if len(line) > 100 else line}"
    previous = "the previous version is intact" if path.exists() else "nothing was written there"
    return WriteError(f"{path}: cannot write it ({why}; needs {space}); {previous}")


def _is_write_error(exc: BaseException, raises: tuple) -> bool:
    return isinstance(exc, raises) or (isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS)


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


def _discard(tmp: Path) -> int:
    """Remove ``tmp``; the bytes it held."""
    try:
        size = tmp.stat().st_size
        tmp.unlink()
    except OSError:
        return 0
    return size


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, needed: int | None = None,
                raises: tuple[type[BaseException], ...] = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that wants a file name (h5py, cv2,
    torch.onnx); on success it is fsync'ed and renamed onto ``path``, on error removed.

    A failure of the write (an OSError of :data:`WRITE_ERRNOS`, one of ``raises``: the types the
    writer raises for a failed write, or any failure to publish) becomes a :class:`WriteError`;
    ``needed`` is the expected size in bytes, for its message."""
    try:
        tmp = temp_path(path)
    except OSError as e:  # the folder cannot be made (full disk, read-only mount)
        raise write_failed(path, e, needed) from e
    try:
        yield tmp
    except BaseException as e:
        written = _discard(tmp)
        if _is_write_error(e, raises) and not isinstance(e, WriteError):
            raise write_failed(path, e, needed, written) from e
        raise
    try:
        publish(tmp, path)
    except OSError as e:
        written = _discard(tmp)
        raise write_failed(path, e, needed, written) from e


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, needed: int | None = None,
                raises: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing whose file appears under ``path`` only when the block succeeds."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file: mode must start with 'w', got {mode!r}")
    with atomic_path(path, needed=needed, raises=raises) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb", *,
                 needed: int | None = None, raises: tuple[type[BaseException], ...] = ()) -> Path:
    """Call ``write(f)`` on a temporary file, then rename it onto ``path``; returns ``path``.
    ``raises``: the exception types ``write`` raises when the file cannot be written (see :func:`atomic_path`)."""
    with atomic_open(path, mode, needed=needed, raises=raises) as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), "wb", needed=len(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", needed=len(text.encode(encoding)), encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary folder next to ``path`` to fill; on success it replaces ``path`` as a whole (two
    renames: a kill between them leaves the old folder as ``.NAME.old-PID``), on error it is removed.
    A failed write in it becomes one :class:`WriteError` naming ``path`` (``needed``: bytes of all its files)."""
    path = Path(path)
    tmp, old = temp_path(path), path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        tmp.mkdir()
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)  # put the previous folder back
        if _is_write_error(e, (WriteError,)):
            raise write_failed(path, e.__cause__ or e if isinstance(e, WriteError) else e, needed) from e
        raise
    shutil.rmtree(old, ignore_errors=True)
