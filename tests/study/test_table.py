"""The study table from hand-made run folders (no training): means, paired CI and p by hand, missing/failed runs."""

import json
import math

import numpy as np
import pytest


from sepbn.evaluation.metrics import auc, failure_rate
from sepbn.evaluation.stats import t_power
from sepbn.study.report import format_markdown, verdict, write_table
from sepbn.study.table import build_table, metric_keys

LABELS = np.array(["a", "a", "b", "b"])
BN = np.array([0.05, 0.06, 0.07, 0.12])
POSE = np.array([True, False, True, False])  # a WFLW attribute flag


def _summary(e: np.ndarray) -> dict:
    out = {"faces": len(e), "nme": float(e.mean())}
    for t in (0.08, 0.10):
        out[f"fr@{100 * t:g}"] = failure_rate(e, t)
        out[f"auc@{100 * t:g}"] = auc(e, t)
    return out


def _run(root, variant, seed, errors):
    folder = root / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    summary = {"dataset": "val", "protocol": "300w68", "normalizer": "inter-ocular", **_summary(errors),
               "domains": {d: _summary(errors[LABELS == d]) for d in ("a", "b")},
               "subsets": {"test": {"faces": 4, "nme": float(errors.mean())},
                           "pose": {"faces": 2, "nme": float(errors[POSE].mean())}}}
    (folder / "result.json").write_text(json.dumps({
        "variant": variant, "seed": seed, "results": [summary],
        "train_seconds": {"wall": 60.0 * (seed + 1), "cpu": 120.0, "stages": {}}}))
    np.savez(folder / "errors.npz", **{"val:errors": errors, "val:face_ids": np.arange(4),
                                       "val:domains": np.array([0, 0, 1, 1]), "val:domain_labels": LABELS,
                                       "val:subset=pose": POSE})


@pytest.fixture
def study_dir(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({
        "name": "hand", "seeds": [0, 1, 2], "baseline": "bn",
        "eval": {"fr_thresholds": [0.08, 0.10], "checkpoint": "final", "normalizer": None, "domains": True, "sets": []},
        "variants": [{"name": "bn"}, {"name": "sep"}, {"name": "bad"}]}))
    for s in range(3):
        # sep beats bn on every face of every seed, by 1..4, 5..8, 9..12 thousandths: all 12 differences distinct
        _run(tmp_path, "bn", s, BN + 0.01 * s)
        _run(tmp_path, "sep", s, BN + 0.01 * s - 1e-3 * (np.arange(1, 5) + 4 * s))
    _run(tmp_path, "bad", 0, BN)
    (tmp_path / "sep" / "seed9").mkdir()  # not a seed of the study: ignored
    (tmp_path / "bad" / "seed1").mkdir()
    (tmp_path / "bad" / "seed1" / "error.json").write_text(json.dumps(
        {"step": "train", "exit_code": 1, "log": "x/train.log", "error": "ValueError: boom"}))
    return tmp_path


def test_paired_numbers_by_hand(study_dir):
    table = build_table(study_dir)
    val = table["datasets"]["val"]
    bn, sep = val["variants"]["bn"], val["variants"]["sep"]
    assert bn["n"] == 3 and bn["nme"]["mean"] == pytest.approx(BN.mean() + 0.01)
    assert bn["nme"]["sd"] == pytest.approx(0.01)  # seed means 0.075, 0.085, 0.095
    cmp = sep["vs_baseline"]
    # per-seed NME differences: -2.5e-3, -6.5e-3, -10.5e-3 -> mean -6.5e-3, sd 4e-3
    d = cmp["nme"]
    se = 4e-3 / math.sqrt(3)
    assert cmp["seeds"] == [0, 1, 2] and d["mean"] == pytest.approx(-6.5e-3) and d["sd"] == pytest.approx(4e-3)
    assert d["ci_low"] == pytest.approx(-6.5e-3 - 4.302652729911275 * se)
    assert d["ci_high"] == pytest.approx(-6.5e-3 + 4.302652729911275 * se)
    t = 6.5e-3 / se
    assert d["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t))  # 2 degrees of freedom, closed form
    # one pair per face (its mean over the 3 seeds: -5, -6, -7, -8 thousandths), never one per face and seed:
    # 4 differences of one sign, exact two-sided p = 2 / 2^4
    assert cmp["nme_faces"]["n"] == 4 and cmp["nme_faces"]["p"] == pytest.approx(2 / 2 ** 4)
    assert cmp["nme_faces"]["median"] == pytest.approx(-6.5e-3)
    # power at the default effect (0.1 points) with the measured sd 4e-3: the smallest n, checked by hand
    need = cmp["seeds_for_80"]
    assert need["effect"] == 1e-3 and t_power(need["seeds"], 1e-3, 4e-3) >= 0.8 > t_power(need["seeds"] - 1, 1e-3, 4e-3)
    dom = sep["domains"]["a"]["vs_baseline"]  # faces 0 and 1: differences 1.5, 5.5, 9.5 thousandths
    assert dom["nme"]["mean"] == pytest.approx(-5.5e-3) and dom["nme_faces"]["n"] == 2
    pose = sep["domains"]["subset pose"]["vs_baseline"]  # faces 0 and 2: 1, 3 / 5, 7 / 9, 11 thousandths
    assert pose["nme"]["mean"] == pytest.approx(-6e-3) and pose["nme_faces"]["n"] == 2
    assert "subset test" not in sep["domains"]
    assert table["variants"]["bn"]["train_seconds"]["wall"]["mean"] == pytest.approx(120.0)
    assert metric_keys([0.08, 0.10]) == ["nme", "fr@8", "fr@10", "auc@10"]


def test_missing_and_failed_runs_are_shown(study_dir):
    table = build_table(study_dir)
    bad = table["variants"]["bad"]
    assert bad["done"] == [0] and list(bad["failed"]) == ["1"] and bad["missing"] == [2]
    row = table["datasets"]["val"]["variants"]["bad"]
    assert row["n"] == 1 and row["nme"]["sd"] is None and row["vs_baseline"]["nme"]["p"] is None
    text = format_markdown(table)
    assert "| bad | 1/3 (1 failed, 1 missing) |" in text
    assert "bad/seed1: train: ValueError: boom (log: x/train.log)" in text and "Not started yet: bad/seed2" in text
    assert "| sep | 3/3 |" in text and "-0.65 (" in text
    assert text.index("| a | 2 | bn |") < text.index("| b | 2 | bn |") < text.index("| subset pose | 2 | bn |")
    (study_dir / "bad" / "seed2").mkdir()
    (study_dir / "bad" / "seed2" / "run.json").write_text("{}")  # started, then killed
    text = format_markdown(build_table(study_dir))
    assert "| bad | 1/3 (1 failed, 1 unfinished) |" in text
    assert "not finished (running, interrupted or killed): bad/seed2" in text


def test_write_table_files_and_verdicts(study_dir):
    text = write_table(study_dir)
    assert (study_dir / "table.md").read_text() in text and (study_dir / "ced.png").stat().st_size > 1000
    saved = json.loads((study_dir / "table.json").read_text())
    assert saved["datasets"]["val"]["variants"]["sep"]["n"] == 3
    cmp = saved["datasets"]["val"]["variants"]["sep"]["vs_baseline"]
    words = verdict(cmp, "bn", "sep")
    # p = 0.107 over 3 seeds (see above); the 4 faces all moved the same way, p = 0.125: no shift either
    assert "within the seed noise" in words and "per-face test" not in words
    shifted = dict(cmp, nme_faces=dict(cmp["nme_faces"], p=0.01))
    assert "per-face test does find a shift (p = 0.01)" in verdict(shifted, "bn", "sep")
    strong = dict(cmp, nme=dict(cmp["nme"], p=0.001))
    assert "0.65 points lower (better)" in verdict(strong, "bn", "sep") and "beyond" in verdict(strong, "bn", "sep")
    assert "not enough paired seeds" in verdict(saved["datasets"]["val"]["variants"]["bad"]["vs_baseline"], "bn", "bad")


def test_other_baseline(study_dir):
    text = write_table(study_dir, "sep")
    table = json.loads((study_dir / "table-vs-sep.json").read_text())
    bn = table["datasets"]["val"]["variants"]["bn"]["vs_baseline"]["nme"]
    assert table["baseline"] == "sep" and bn["mean"] == pytest.approx(6.5e-3) and "| sep |" in text
    assert (study_dir / "table-vs-sep.md").is_file() and not (study_dir / "table.md").exists()
    with pytest.raises(ValueError, match="baseline 'nope' is not a variant"):
        build_table(study_dir, "nope")
