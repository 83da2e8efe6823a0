"""`sepbn study archive`: a study's results copied for committing, checkable by `adopt` on another machine."""

import json
from pathlib import Path

import pytest

from sepbn.cli import main
from sepbn.study.adopt import adopt_run
from sepbn.study.archive import archive_study
from sepbn.study.curves import read_curves
from sepbn.study.runner import is_done
from tests.study.test_adopt import _jobs


def _run(job, *, finished=True):
    """A job folder as the runner leaves it: run.json, train logs per stage, result files when finished."""
    job.folder.mkdir(parents=True)
    (job.folder / "run.json").write_text(json.dumps(job.to_dict()))
    for st in job.stages:
        Path(st["out"]).mkdir(parents=True, exist_ok=True)
        (Path(st["out"]) / "train.csv").write_text(f"step,loss\n1,{len(st['out'])}\n")
        (Path(st["out"]) / "last.pt").write_bytes(b"weights")
    if finished:
        (job.folder / "errors.npz").write_bytes(b"npz")
        (job.folder / "time.json").write_text('{"cpu": 1.0}')
        (job.folder / "result.json").write_text(json.dumps(
            {"variant": job.variant, "seed": job.seed, "results": [{"dataset": s, "nme": 0.04} for s in
                                                                      ("val", "val+flip")]}))


@pytest.fixture
def study(tmp_path):
    out = tmp_path / "runs" / "study"
    jobs = _jobs(tmp_path, out)  # bn/seed0, bn/seed1, cnt/seed0, cnt/seed1; checkout = tmp_path
    for job in jobs[:3]:
        _run(job)
    _run(jobs[3], finished=False)
    (out / "study.json").write_text(json.dumps({"name": "s", "path": str(tmp_path / "s.toml")}))
    (out / "table.md").write_text("| table |\n")
    (out / "ced.png").write_bytes(b"png")
    return tmp_path, out


def test_archive_copies_finished_runs_with_paths_relative_to_the_checkout(study):
    root, out = study
    dest = root / "docs" / "science" / "s"
    done, unfinished = archive_study(out, dest)
    assert done == ["bn/seed0", "bn/seed1", "cnt/seed0"] and unfinished == ["cnt/seed1"]
    assert sorted(p.name for p in (dest / "bn" / "seed0").iterdir()) == [
        "errors.npz", "result.json", "run.json", "time.json", "train.csv"]
    assert sorted(p.name for p in (dest / "cnt" / "seed0").glob("train*.csv")) == ["train_stage1.csv",
                                                                                  "train_stage2.csv"]
    assert not list(dest.rglob("*.pt")) and not (dest / "cnt" / "seed1").exists()  # no weights, no unfinished run
    spec = json.loads((dest / "cnt" / "seed0" / "run.json").read_text())
    assert spec["cwd"] == "." and spec["stages"][0]["config"] == "base.toml"
    assert spec["folder"] == "runs/study/cnt/seed0" and str(root) not in json.dumps(spec)
    assert json.loads((dest / "study.json").read_text())["path"] == "s.toml"
    assert (dest / "table.md").read_text() == "| table |\n" and (dest / "ced.png").read_bytes() == b"png"


def test_study_json_is_relative_when_the_last_run_came_from_an_archive(study):
    root, out = study
    first = root / "first"
    archive_study(out, first)
    # a later study folder whose last job is a copy of an archived run (its run.json says cwd ".")
    (out / "cnt" / "seed1").rename(root / "unfinished")
    (out / "zz").mkdir()
    (first / "cnt" / "seed0").rename(out / "zz" / "seed0")
    result = json.loads((out / "bn" / "seed0" / "result.json").read_text())
    (out / "bn" / "seed0" / "result.json").write_text(json.dumps({**result, "weights": str(out / "bn/seed0/final")}))
    dest = root / "second"
    done, _ = archive_study(out, dest)
    assert done[-1] == "zz/seed0"
    assert json.loads((dest / "study.json").read_text())["path"] == "s.toml"
    assert json.loads((dest / "bn" / "seed0" / "result.json").read_text())["weights"] == "runs/study/bn/seed0/final"
    assert str(root) not in (dest / "zz" / "seed0" / "run.json").read_text()


def test_an_archived_run_is_adopted_with_its_configs_checked(study, tmp_path):
    root, out = study
    dest = root / "archive"
    archive_study(out, dest)
    again = _jobs(root, root / "again")  # a later study with the same variants, e.g. on a fresh machine
    job, how = adopt_run(dest / "cnt" / "seed0", again, "cnt")
    assert "checked against its run.json" in how and is_done(job.folder)
    assert all((job.folder / f"stage{k}" / "train.csv").is_file() for k in (1, 2))
    with pytest.raises(Exception, match="other configs or overrides"):  # the BN run is not the cnt arm
        adopt_run(dest / "bn" / "seed1", again, "cnt")


def test_cli_archive(study, capsys):
    root, out = study
    assert main(["study", "archive", str(out), "--to", str(root / "copy")]) == 0
    assert "archived 3 finished run(s)" in capsys.readouterr().out
    assert main(["study", "archive", str(root), "--to", str(root / "copy2")]) == 2  # not a study folder
    assert "no study.json" in capsys.readouterr().err


def test_the_learning_curves_read_an_archived_run(study):
    root, out = study
    dest = root / "archive"
    archive_study(out, dest)
    for job in ("bn/seed0", "cnt/seed0"):
        original, archived = read_curves(out / job), read_curves(dest / job)  # archived paths point nowhere here
        assert len(original["loss"]) == (2 if job.startswith("cnt") else 1)
        assert (original["loss"] == archived["loss"]).all()
