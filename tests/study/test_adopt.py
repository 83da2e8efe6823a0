"""`sepbn study adopt`: a finished run counted in a second study, refused where it does not match the job."""

import json

import pytest

from sepbn.cli import main
from sepbn.study.adopt import adopt_run
from sepbn.study.runner import is_done
from sepbn.study.spec import StudyError, load_study, study_jobs

BASE = 'name = "base"\n[[data.train]]\nfmt = "csv"\nsource = "train.csv"\nprotocol = "5pt"\n'
STUDY = """
base = "base.toml"
seeds = [0, 1]
baseline = "bn"
[eval]
sets = [{ fmt = "csv", source = "val.csv", protocol = "5pt", name = "val" }]
flip = true
[[variant]]
name = "bn"
set = ["model.norm=bn"]
[[variant]]
name = "cnt"
set = ["model.norm=sepbn"]
stages = [{set = ["optim.lr=1e-2"]}, {set = ["optim.backbone_lr=1e-7"]}]
"""


def _jobs(tmp_path, out, cwd=None):
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "s.toml").write_text(STUDY)
    return study_jobs(load_study(tmp_path / "s.toml"), out, cwd=tmp_path if cwd is None else cwd)


def _finished(folder, job, *, run_json=True, sets=("val", "val+flip"), train=("train.csv",)):
    """A run folder as the runner leaves it (or, without run.json, as a committed copy of one)."""
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(
        {"variant": job.variant, "seed": job.seed, "results": [{"dataset": s, "nme": 0.04} for s in sets]}))
    (folder / "errors.npz").write_bytes(b"npz")
    for name in train:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("step,loss\n1,0.5\n")
    if run_json:
        (folder / "run.json").write_text(json.dumps(job.to_dict()))
    return folder


def test_adopt_copies_results_logs_and_writes_this_study_job(tmp_path):
    other = _jobs(tmp_path, tmp_path / "other")
    jobs = _jobs(tmp_path, tmp_path / "out")
    src = _finished(tmp_path / "other" / "bn" / "seed1", other[1])
    job, how = adopt_run(src, jobs, "bn")
    assert job.id == "bn/seed1" and "run.json" in how and is_done(job.folder)
    assert json.loads((job.folder / "run.json").read_text())["folder"] == str(job.folder)
    assert (job.folder / "train.csv").is_file() and (job.folder / "errors.npz").read_bytes() == b"npz"
    with pytest.raises(StudyError, match="already done"):
        adopt_run(src, jobs, "bn")


def test_adopt_two_stage_copy_without_run_json(tmp_path):
    jobs = _jobs(tmp_path, tmp_path / "out")
    src = _finished(tmp_path / "copy", jobs[2], run_json=False, train=("train_stage1.csv", "train_stage2.csv"))
    job, how = adopt_run(src, jobs, "cnt")
    assert job.id == "cnt/seed0" and "not verifiable" in how
    assert all((tmp_path / "out" / "cnt" / "seed0" / f"stage{k}" / "train.csv").is_file() for k in (1, 2))


@pytest.mark.parametrize("case", ["other overrides", "other eval", "other sets", "unknown seed", "unfinished"])
def test_adopt_refuses_a_run_that_does_not_match(tmp_path, case):
    jobs = _jobs(tmp_path, tmp_path / "out")
    bn0, cnt0 = jobs[0], jobs[2]
    if case == "other overrides":  # a BN run offered as the cnt arm
        src, match = _finished(tmp_path / "src", bn0), "other configs or overrides"
    elif case == "other eval":
        src = _finished(tmp_path / "src", cnt0)
        spec = json.loads((src / "run.json").read_text())
        spec["eval"]["flip"] = False
        (src / "run.json").write_text(json.dumps(spec))
        match = "evaluated otherwise"
    elif case == "other sets":
        src, match = _finished(tmp_path / "src", cnt0, run_json=False, sets=("val",)), "evaluated on"
    elif case == "unknown seed":
        src = _finished(tmp_path / "src", cnt0, run_json=False)
        (src / "result.json").write_text(json.dumps({"seed": 7, "results": []}))
        match = "seed 7"
    else:
        src, match = tmp_path / "src", "no result.json"
        src.mkdir()
    with pytest.raises(StudyError, match=match):
        adopt_run(src, jobs, "cnt")
    assert not (tmp_path / "out" / "cnt").exists()


def test_cli_adopt_then_table_counts_the_run(tmp_path, capsys):
    other = _jobs(tmp_path, tmp_path / "other", cwd=".")  # as the command makes them: from the working directory
    src = _finished(tmp_path / "other" / "bn" / "seed0", other[0])
    out = tmp_path / "out"
    assert main(["study", "adopt", str(tmp_path / "s.toml"), "--out", str(out), "--variant", "bn", str(src)]) == 0
    assert "bn/seed0 <- " in capsys.readouterr().out
    assert (out / "study.json").is_file() and is_done(out / "bn" / "seed0")
    assert main(["study", "adopt", str(tmp_path / "s.toml"), "--out", str(out), "--variant", "nope", str(src)]) == 2


def test_adopt_accepts_a_run_made_in_another_checkout(tmp_path):
    jobs = _jobs(tmp_path, tmp_path / "out")
    spec = json.loads(json.dumps(jobs[0].to_dict()))  # a copy: to_dict shares the job's stage dicts
    elsewhere = "/elsewhere/repo"  # the same config file, relative to that run's own checkout
    spec["stages"][0]["config"] = spec["stages"][0]["config"].replace(spec["cwd"], elsewhere, 1)
    spec["cwd"] = elsewhere
    src = _finished(tmp_path / "src", jobs[0], run_json=False)
    (src / "run.json").write_text(json.dumps(spec))
    assert spec["stages"][0]["config"].startswith(elsewhere)
    assert adopt_run(src, jobs, "bn")[0].id == "bn/seed0"


def test_adopt_names_unnamed_sets_as_the_evaluation_does(tmp_path):
    _jobs(tmp_path, tmp_path / "out")  # writes base.toml
    (tmp_path / "s.toml").write_text(STUDY.replace(', name = "val"', ""))  # the set's default name: csv-5pt
    jobs = study_jobs(load_study(tmp_path / "s.toml"), tmp_path / "out", cwd=tmp_path)
    with pytest.raises(StudyError, match="'csv-5pt', 'csv-5pt\\+flip'"):
        adopt_run(_finished(tmp_path / "a", jobs[0], run_json=False), jobs, "bn")
    src = _finished(tmp_path / "b", jobs[0], run_json=False, sets=("csv-5pt", "csv-5pt+flip"))
    assert adopt_run(src, jobs, "bn")[0].id == "bn/seed0"
