"""The worked example of docs/formats.md, "Your own protocol", runs as written (in a temporary folder)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def test_own_protocol_example_runs(tmp_path, monkeypatch, capsys):
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Your own protocol"):]
    section = section[:section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/formats.md: Your own protocol", "exec"), {"__name__": "doc"})
    assert capsys.readouterr().out.strip() == "NME (tri3, eye centres (0, 1)) [0.1]"
