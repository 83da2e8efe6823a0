"""Study files: parsing, the jobs and their overrides in order, errors naming the key; the paper's study files."""

from pathlib import Path

import pytest

from sepbn.study.spec import StudyError, check_study, load_study, study_jobs

REPO = Path(__file__).resolve().parents[2]
BASE = """
name = "base"
[[data.train]]
fmt = "csv"
source = "train.csv"
protocol = "5pt"
"""


def _study(tmp_path, text: str) -> Path:
    (tmp_path / "base.toml").write_text(BASE)
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


TWO_STAGE = """
base = "base.toml"
seeds = [3, 4]
baseline = "bn"
set = ["schedule.epochs=2", "schedule.warmup_epochs=0"]
[eval]
normalizer = "box"
fr_thresholds = [0.1]
[[variant]]
name = "bn"
set = ["model.norm=bn"]
[[variant]]
name = "cnt"
set = ["model.norm=sepbn"]
stages = [{set = ["optim.lr=1e-2"]}, {config = "base.toml", set = ["optim.backbone_lr=1e-7"]}]
"""


def test_jobs_and_override_order(tmp_path):
    study = load_study(_study(tmp_path, TWO_STAGE), ["data.root=/data"])
    assert study.name == "s" and study.seeds == (3, 4) and study.eval.fr_thresholds == (0.1,)
    jobs = study_jobs(study, tmp_path / "out")
    assert [j.id for j in jobs] == ["bn/seed3", "bn/seed4", "cnt/seed3", "cnt/seed4"]
    bn = jobs[0]
    assert bn.stages[0]["out"] == str((tmp_path / "out" / "bn" / "seed3").resolve())
    assert bn.stages[0]["overrides"] == ["train.progress=false", "schedule.epochs=2", "schedule.warmup_epochs=0",
                                         "data.root=/data",
                                         "model.norm=bn", "train.seed=3"]
    s1, s2 = jobs[3].stages
    assert s1["out"].endswith("cnt/seed4/stage1") and s2["out"].endswith("cnt/seed4/stage2")
    assert s1["overrides"][-3:] == ["model.norm=sepbn", "optim.lr=1e-2", "train.seed=4"]
    assert s2["overrides"][-3:] == ["optim.backbone_lr=1e-7", "train.seed=4", f"train.init_from={s1['out']}/last.pt"]
    assert [j.id for j in study_jobs(study, tmp_path, only=["cnt"])] == ["cnt/seed3", "cnt/seed4"]
    with pytest.raises(StudyError, match="--only"):
        study_jobs(study, tmp_path, only=["nope"])
    assert [j.id for j in study_jobs(study, tmp_path, seeds=[4])] == ["bn/seed4", "cnt/seed4"]
    with pytest.raises(StudyError, match="--seeds"):
        study_jobs(study, tmp_path, seeds=[5])
    assert check_study(study) == {}


@pytest.mark.parametrize("text, message", [
    ('base = "base.toml"\nseeds = [0]\n[[variant]]\nname = "a"\nsets = []', r"unknown key\(s\) \['sets'\]"),
    ('base = "base.toml"\nbaseline = "x"\n[[variant]]\nname = "a"', "baseline 'x' is not a variant"),
    ('base = "missing.toml"\n[[variant]]\nname = "a"', "config file not found"),
    ('base = "base.toml"\nseeds = [1, 1]\n[[variant]]\nname = "a"', "distinct integers"),
    ('base = "base.toml"\n[eval]\ncheckpoint = "last"\n[[variant]]\nname = "a"', "eval.checkpoint"),
    ('base = "base.toml"\n[[variant]]\nname = "a"\nset = ["model.norm"]', "key=value"),
    ('base = "base.toml"', "no \\[\\[variant\\]\\]"),
])
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(StudyError, match=message):
        load_study(_study(tmp_path, text))


def test_check_reports_unresolvable_variant(tmp_path):
    study = load_study(_study(tmp_path, 'base = "base.toml"\n[[variant]]\nname = "a"\n'
                                        '[[variant]]\nname = "b"\nset = ["model.nope=1"]'))
    broken = check_study(study)
    assert list(broken) == ["b"] and "unknown key 'nope'" in broken["b"]


PAPER = sorted((REPO / "configs" / "paper" / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_study_files_resolve(path):
    study = load_study(path)
    assert check_study(study) == {} and len(study.variants) >= 2 and len(study.seeds) >= 3


def test_paper_study_files_exist():
    names = {p.stem for p in PAPER}
    for table in ("table2", "table3", "table4", "table5", "table6", "table10"):
        assert any(n.startswith(table + "_") for n in names), table
    assert any(n.startswith("cnt_") for n in names)
