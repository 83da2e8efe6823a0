"""``sepbn synth``: generation, preview and argument errors through the console entry point."""

from __future__ import annotations

from sepbn.cli import main
from sepbn.data.synth import load_synth


def test_sepbn_synth_writes_a_dataset_and_a_preview(tmp_path, capsys):
    rc = main(["synth", "--out", str(tmp_path), "--protocol", "300w68,5pt", "--num", "5", "--size", "48",
               "--seed", "3", "--preview", "--preview-faces", "2", "--domains", "frontal:1,right-profile:1"])
    assert rc == 0
    assert "4 train + 1 test" in capsys.readouterr().out
    assert (tmp_path / "preview.png").stat().st_size > 0
    recs = load_synth(tmp_path, "300w68", "train")
    assert len(recs) == 4 and {r.attributes["domain"] for r in recs} <= {"frontal", "right-profile"}
    # no left profile in this set: a mirrored right profile keeps its own domain
    assert all(r.attributes["mirror_domain_id"] == r.attributes["domain_id"] for r in recs)
    assert not (tmp_path / "wflw98").exists()


def test_sepbn_synth_reports_bad_arguments(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--protocol", "nope"]) == 2
    assert "unknown protocol" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--domains", "frontal"]) == 2
    assert main(["synth", "--out", str(tmp_path), "--num", "-1"]) == 2
