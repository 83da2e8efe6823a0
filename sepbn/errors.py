"""Errors a user can act on, and the one line the ``sepbn`` console script prints for them.

Every sub-command reports an expected error as ``sepbn <cmd>: <file>: <problem>`` on stderr and exits
non-zero (``sepbn --debug <cmd>`` shows the traceback); :func:`sepbn.cli.main` is the only place that
catches them, except a failing rank of a multi-process ``sepbn train``, which prints its own with
:func:`report` and leaves at once (``sepbn.commands.train.leave_at_once``). Expected errors are the
types in :data:`EXPECTED`:

* ``ValueError``: bad input, config value, annotation or checkpoint. sepbn raises it only with a
  message that names the file or the key (``ConfigError``, ``FormatError``, ``CheckpointError`` are
  subclasses);
* ``OSError``: a missing or unreadable file, a full disk (``ImageReadError`` is one);
* :class:`UserError`: the rest (a non-finite loss, lost ranks, a missing face detector, a stopped run).

Any other exception is a bug and keeps its traceback. An error's ``exit_code`` attribute, where it
has one, is the exit status (default 1; usage and config errors 2, a preempted run 75).
Standard library only, so every sub-package may use it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["UserError", "UsageError", "EXPECTED", "describe", "report", "rank_tag"]


class UserError(Exception):
    """An error the user can act on that is neither a ``ValueError`` nor an ``OSError``."""

    exit_code = 1


class UsageError(UserError):
    """The command line asks for something impossible (as argparse's own errors: exit status 2)."""

    exit_code = 2


EXPECTED: tuple[type[BaseException], ...] = (UserError, ValueError, OSError)


def describe(exc: BaseException) -> str:
    """The message of an expected error: ``file: problem`` for an OSError that the OS raised."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
        return f"{where}: {exc.strerror}"
    return str(exc).strip() or type(exc).__name__


def report(prog: str, exc: BaseException) -> int:
    """Print the one line of an expected error, ``prog: file: problem``, on stderr; its exit status."""
    print(f"{prog}: {describe(exc)}", file=sys.stderr)
    return int(getattr(exc, "exit_code", 1))


def rank_tag(rank: int | None = None, world_size: int | None = None) -> str:
    """``" [rank r/W]"`` in a multi-process run (read from torchrun's environment by default), else ``""``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    return f" [rank {rank}/{world_size}]" if world_size > 1 else ""
