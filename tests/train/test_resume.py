"""`--resume` checks what it continues: the stored config against the new one (shape changes refused,
other changes only with --allow-changed, recorded in resume.csv), and a missing last.pt names best.pt."""

from __future__ import annotations

import csv

import pytest

from sepbn.cli import main
from sepbn.config import ConfigError, load_config
from sepbn.train.resume import check_resume_config, config_changes
from tinycfg import tiny_config


@pytest.fixture(scope="module")
def done(tiny_faces, tmp_path_factory):
    """A finished 2-step run (its folder is copied by the tests that change it)."""
    root = tmp_path_factory.mktemp("resume")
    cfg = root / "tiny.toml"
    cfg.write_text(tiny_config(tiny_faces, progress=False))
    assert main(["train", str(cfg), "--out", str(root / "run"), "--set", "train.max_steps=2"]) == 0
    return cfg, root / "run"


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_under_changed_shapes_is_refused_in_one_line_and_leaves_the_folder(done, capsys):
    cfg, run = done
    before = _files(run)
    capsys.readouterr()
    code = main(["train", str(cfg), "--out", str(run), "--resume", "--set", "model.width=0.125",
                 "--set", "train.max_steps=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"sepbn train: {run / 'last.pt'}: cannot resume: the config changes the network's shapes "
                          "(model.width)")
    assert _files(run) == before  # config.toml not overwritten, no checkpoint touched


def test_resume_under_other_changes_needs_allow_changed_and_is_logged(done, tmp_path, capsys):
    import shutil

    cfg, first = done
    run = tmp_path / "run"
    shutil.copytree(first, run)
    before = _files(run)
    args = ["train", str(cfg), "--out", str(run), "--resume", "--set", "train.batch_size=2", "--set", "optim.lr=0.01",
            "--set", "train.max_steps=3"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "differs from the run's in optim.lr, train.batch_size; resume with --allow-changed optim.lr,train.batch_size" in err
    assert _files(run) == before
    assert main(args + ["--allow-changed", "train.batch_size,optim"]) == 0
    assert "resumed with changed optim.lr, train.batch_size" in capsys.readouterr().out
    with open(run / "resume.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["key"], r["new"]) for r in rows] == [("2", "optim.lr", "0.01"), ("2", "train.batch_size", "2")]


def test_resume_without_last_pt_says_to_resume_from_best_pt(tiny_faces, tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config(tiny_faces, progress=False))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run)]) == 0  # one epoch: validated, best.pt written
    (run / "last.pt").unlink()  # the full disk that kept the first last.pt from being written
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"sepbn train: checkpoint not found: {run / 'last.pt'}; the run's best epoch is in "
                   f"{run / 'best.pt'}: resume from it with --resume {run / 'best.pt'}")
    (run / "best.pt").unlink()
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 1
    assert "holds only the weights folder(s) final, best/ (no optimiser state)" in capsys.readouterr().err


def test_config_changes_and_what_is_free(tiny_faces):
    cfg = load_config(None, [f'data.train=[{{"fmt": "csv", "source": "{tiny_faces["5pt"]}", "protocol": "5pt"}}]'])
    from sepbn.config import config_to_dict

    stored = config_to_dict(cfg)
    assert config_changes(stored, stored) == {}
    new = load_config(None, [f'data.train=[{{"fmt": "csv", "source": "{tiny_faces["300w68"]}", "protocol": "300w68"}}]',
                             "train.max_steps=9", "train.progress=false"])
    with pytest.raises(ConfigError, match=r"shapes \(data.train.\*.protocol \(\['5pt'\] -> \['300w68'\]\)\)"):
        check_resume_config(stored, new, [], "x.pt")
    free = load_config(None, [f'data.train=[{{"fmt": "csv", "source": "{tiny_faces["5pt"]}", "protocol": "5pt"}}]',
                              "train.max_steps=9", "train.progress=false"])
    assert check_resume_config(stored, free, [], "x.pt") == []  # how long and how visibly: free
