"""Errors and skip bookkeeping shared by every annotation reader (issue 3, section 5).

A reader never drops a face silently. A malformed record raises :class:`FormatError`
naming the file, the line (or ``#index`` inside a ``.mat``/JSON file) and the field. With
``skip_invalid=True`` the record is left out instead and listed in ``RecordList.skipped``
as ``(source, reason)``; faces that carry no landmark annotation at all (WIDER ``-1``
lines, COCO annotations without keypoints) and faces removed by a documented filter
(WIDER's 80 px rule) are always listed there too, and one warning line gives the count.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

__all__ = ["FormatError", "RecordList", "Issues"]


class FormatError(ValueError):
    """A malformed annotation: ``"<file>:<line>: field <n> (<name>): <problem>"``.

    Attributes:
        source: ``"file:line"`` or ``"file#index"``.
        field: the field (1-based number and name, e.g. ``"45 (x22)"``), or None.
        reason: the problem, with the offending value.
    """

    def __init__(self, source: str, reason: str, field: str | None = None) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        super().__init__(f"{source}: {self.detail}")

    @property
    def detail(self) -> str:
        """The message without the source: ``"field 45 (x22): 'abc' is not a number"``."""
        return f"field {self.field}: {self.reason}" if self.field else self.reason


class RecordList(list):
    """A list of FaceRecord that also says which faces were left out and why.

    ``skipped`` is a list of ``(source, reason)``, in file order.
    """

    def __init__(self, items=(), skipped: list[tuple[str, str]] | None = None) -> None:
        super().__init__(items)
        self.skipped: list[tuple[str, str]] = list(skipped or [])


class Issues:
    """Collects skipped faces while a reader runs; re-raises errors unless ``skip_invalid``."""

    def __init__(self, skip_invalid: bool = False) -> None:
        self.skip_invalid = bool(skip_invalid)
        self.skipped: list[tuple[str, str]] = []

    @contextmanager
    def record(self) -> Iterator[None]:
        """Wrap the parsing of one face: a FormatError is raised, or recorded as skipped."""
        try:
            yield
        except FormatError as e:
            if not self.skip_invalid:
                raise
            self.skipped.append((e.source, e.detail))

    def skip(self, source: str, reason: str) -> None:
        """A face left out by rule (no landmark annotation, a size filter): not an error."""
        self.skipped.append((source, reason))

    def warn(self, what: str, kept: int) -> None:
        """One warning line with the number of skipped faces and the commonest reasons."""
        if not self.skipped:
            return
        kinds = Counter(_reason_kind(r) for _, r in self.skipped)
        top = ", ".join(f"{n} {k}" for k, n in kinds.most_common(3))
        more = "" if len(kinds) <= 3 else f", {len(kinds) - 3} more kinds"
        warnings.warn(
            f"{what}: kept {kept} faces, skipped {len(self.skipped)} ({top}{more}); see .skipped",
            stacklevel=3,
        )


def _reason_kind(reason: str) -> str:
    # Group reasons by their wording without values, paths and field numbers, e.g.
    # "field 45 (x22): 'abc' is not a number" -> "... is not a number".
    text = reason.split(": ", 1)[1] if reason.startswith("field ") and ": " in reason else reason
    text = re.sub(r"'[^']*'|\S*[/\\]\S*|-?\d[\w.+-]*", "#", text)
    return re.sub(r"\(.*\)", "", text).strip()
