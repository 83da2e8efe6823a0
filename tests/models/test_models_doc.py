"""The Python snippets of docs/models.md run as written (except those marked as not executed)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
SKIP = "<!-- not executed by tests"


def snippets() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", text, flags=re.S):
        if not match.group("before").startswith(SKIP):
            found.append(match.group("code"))
    return found


def test_doc_snippets_run():
    codes = snippets()
    assert len(codes) >= 1
    for code in codes:
        exec(compile(code, str(DOC), "exec"), {})
