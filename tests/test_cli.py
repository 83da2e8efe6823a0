"""`sepbn train` then `sepbn eval` end to end on tiny data; JSON output checked."""

import json
import subprocess
import sys

from sepbn.cli import main
from tinycfg import tiny_config


def _config(tmp_path, faces):
    text = tiny_config(faces, name="cli-tiny", norm="sepbn", val_name="val5", epochs=2, warmup_epochs=1, tau_epochs=2,
                       progress=False)
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_train_then_eval(tiny_faces, tmp_path, capsys):
    cfg = _config(tmp_path, tiny_faces)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--set", "train.max_steps=3"]) == 0
    assert (run / "last.pt").is_file() and "max_steps = 3" in (run / "config.toml").read_text()
    out_json = tmp_path / "eval.json"
    code = main(["eval", "--checkpoint", str(run / "last.pt"), "--data", f"csv:{tiny_faces['5pt']}",
                 "--json", str(out_json), "--ced", str(tmp_path / "ced.png")])
    assert code == 0
    text = capsys.readouterr().out
    assert "NME %" in text and "eye centres (0, 1)" in text and "domain left" in text
    res = json.loads(out_json.read_text())["results"][0]
    assert res["faces"] == 12 and res["protocol"] == "5pt" and 0 < res["nme"] and 0 <= res["fr@10"] <= 1
    assert set(res["domains"]) == {"left", "frontal"} and (tmp_path / "ced.png").is_file()
    # the weights folder and the config's validation sets work too
    assert main(["eval", "--checkpoint", str(run / "final"), "--config", str(cfg)]) == 0
    assert "val5" in capsys.readouterr().out


def test_brute_force_network_validates_and_evaluates_by_branch(tiny_faces, tmp_path, capsys):
    cfg = _config(tmp_path, tiny_faces)
    run = tmp_path / "run"
    # one full epoch, so the loop validates (each face's best branch) and writes best.pt
    assert main(["train", str(cfg), "--out", str(run), "--set", "model.norm=bruteforce",
                 "--set", "schedule.epochs=1", "--set", "schedule.warmup_epochs=0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["val"]) == 1 and summary["val"][0]["nme"] > 0 and (run / "best.pt").is_file()
    capsys.readouterr()
    results = {}
    for branch in ("best", "label", "0", "2"):
        out_json = tmp_path / f"eval_{branch}.json"
        assert main(["eval", "--checkpoint", str(run / "last.pt"), "--data", f"csv:{tiny_faces['5pt']}",
                     "--branch", branch, "--json", str(out_json)]) == 0
        assert "brute-force branch" in capsys.readouterr().out
        results[branch] = json.loads(out_json.read_text())["results"][0]
    assert results["label"]["branch_counts"] == [6, 6, 0] and results["2"]["branch_counts"] == [0, 0, 12]
    assert results["best"]["nme"] <= min(results[b]["nme"] for b in ("label", "0", "2")) + 1e-9
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--data", f"csv:{tiny_faces['5pt']}",
                 "--branch", "7"]) == 1
    assert "0..2, got 7" in capsys.readouterr().err


def test_resume_flag_and_bad_override(tiny_faces, tmp_path, capsys):
    cfg = _config(tmp_path, tiny_faces)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--set", "train.max_steps=2"]) == 0
    assert main(["train", str(cfg), "--out", str(run), "--set", "train.max_steps=4", "--resume"]) == 0
    capsys.readouterr()
    from sepbn.checkpoint import load_checkpoint

    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert main(["train", str(cfg), "--set", "optim.lrr=1"]) == 2
    assert "unknown key 'lrr'" in capsys.readouterr().err


def test_demo_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--num-target", "40", "--num-extra", "40", "--epochs", "1",
                 "--seeds", "2", "--set", "model.width=0.0625", "--set", "train.batch_size=8",
                 "--set", "data.epoch_size=32"])
    assert code == 0
    text = capsys.readouterr().out
    for word in ("BN", "SepBN", "CNT+SepBN", "NME frontal", "CED plot", "overlay", " ± ", "over 2 seeds"):
        assert word in text
    saved = json.loads((out / "results.json").read_text())
    res = saved["results"]
    assert set(res) == {"BN", "SepBN", "CNT+SepBN"} and all(r["faces"] == 8 and r["seeds"] == 2 for r in res.values())
    assert set(saved["verdicts"]) == {"SepBN", "CNT+SepBN"}
    assert all("noise" in v for v in saved["verdicts"].values())
    assert (out / "ced.png").is_file() and (out / "overlay_cnt_sepbn.png").is_file()
    assert (out / "study" / "table.md").is_file() and (out / "study" / "CNT+SepBN" / "seed1" / "stage2" / "final").is_dir()


# --- one error style: `sepbn <cmd>: <file>: <problem>`, non-zero exit, --debug for the traceback --------

def _one_line(capsys, cmd: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"sepbn {cmd}: "), err
    assert "Traceback" not in err
    return err[len(f"sepbn {cmd}: "):]


def test_every_subcommand_prints_expected_errors_as_one_line(tiny_faces, tmp_path, capsys):
    from sepbn.cli import COMMANDS

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    missing = tmp_path / "missing.toml"
    cases = {
        "synth": (["synth", "--out", str(tmp_path / "s"), "--num", "-1"], 2, "--num must be >= 0, got -1"),
        "train": (["train", str(missing)], 2, f"{missing}: config file not found"),
        "eval": (["eval", "--checkpoint", str(bad), "--data", f"csv:{tiny_faces['5pt']}"], 2,
                 f"{bad}: not a readable sepbn checkpoint"),
        "demo": (["demo", "--configs", str(tmp_path), "--out", str(tmp_path / "demo")], 2,
                 f"not found in {tmp_path}"),
        "predict": (["predict", "--checkpoint", str(bad), "--detector", "full", str(tmp_path)], 2, "bad.pt"),
        "export": (["export", "--checkpoint", str(bad), "--format", "onnx", "--out", str(tmp_path / "m.onnx")], 2,
                   "bad.pt"),
        "cache": (["cache", "--fmt", "csv", "--source", str(tmp_path / "none.csv"), "--out", str(tmp_path / "c")], 1,
                  f"{tmp_path / 'none.csv'}: annotation file not found"),
        "check": (["check", str(missing)], 2, f"{missing}: config file not found"),
        "analyze": (["analyze", "--checkpoint", str(bad), "--data", f"csv:{tiny_faces['5pt']}"], 2,
                    f"{bad}: not a readable sepbn checkpoint"),
        "study": (["study", "check", str(missing)], 2, "missing.toml"),
    }
    assert set(COMMANDS) <= set(cases), f"a new sub-command needs an error case here: {set(COMMANDS) - set(cases)}"
    for cmd in COMMANDS:
        argv, code, text = cases[cmd]
        assert main(argv) == code, cmd
        prog = f"{cmd} {argv[1]}" if cmd == "study" else cmd
        assert text in _one_line(capsys, prog), cmd


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch):
    import pytest

    missing = str(tmp_path / "missing.toml")
    for argv in (["--debug", "train", missing], ["train", missing, "--debug"]):
        with pytest.raises(ValueError, match="config file not found"):
            main(argv)
    import sepbn.commands.check as check

    monkeypatch.setattr(check, "run", lambda args: [][1])  # a bug, not an expected error
    with pytest.raises(IndexError):
        main(["check", missing])


def test_check_command_summarises_and_lists_problems(tiny_faces, tmp_path, capsys):
    import shutil

    folder = tmp_path / "faces"
    shutil.copytree(tiny_faces["5pt"].parent, folder)
    cfg = _config(tmp_path, {"5pt": folder / "faces.csv"})
    assert main(["check", str(cfg), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "train csv-5pt: 12 faces" in out and "val val5: 12 faces" in out and "image sizes: 64..64 x 64..64" in out
    assert "box sides: min" in out and "points outside the image: 0 in 0 faces" in out and "ready to train" in out
    (folder / "003.png").write_bytes(b"garbage")
    assert main(["check", str(cfg), "--out", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert "train csv-5pt: 11 faces; unusable 1: 1 undecodable" in captured.out
    err = captured.err.splitlines()
    assert err[0].startswith("sepbn check: 2 face(s) cannot be used (train csv-5pt, val val5)")
    assert err[1:] == [f"  {folder / '003.png'}: cannot decode the image (7 bytes)"] * 2
    assert main(["check", str(cfg), "--set", 'data.train.0.options={"skip_invalid": true}', "--set", "data.val=[]",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "skipped 1: 1 undecodable" in out and f"skipped {folder / '003.png'}: cannot decode" in out


def test_dataset_key_typos_exit_2_naming_file_and_key(tiny_faces, tmp_path, capsys):
    """Issue 20, fault 7: a protocol, fmt or split typo is a config error (exit 2) naming file and key."""
    cfg = _config(tmp_path, tiny_faces)
    cases = [("data.train.0.protocol=5ptt", "data.train.0.protocol", "5ptt"),
             ("data.val.0.fmt=cvs", "data.val.0.fmt", "unknown format 'cvs'"),
             ("data.train.0.split=tset", "data.train.0.split", "one split per file")]
    for override, key, detail in cases:
        for command in (["train", str(cfg), "--out", str(tmp_path / "never")], ["check", str(cfg)]):
            assert main([*command, "--set", override]) == 2, (command[0], override)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and str(cfg) in err and key in err and detail in err, err
    assert not (tmp_path / "never").exists()
    # a format with named splits lists them
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace('fmt = "csv"', 'fmt = "wflw"\nsplit = "tain"', 1))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: data.train.0.split: format 'wflw' has no split 'tain'; its splits: ['train', 'test']" in err


def test_only_the_command_being_run_is_imported():
    # commands import their stacks at the top, so the CLI must not import the ones it does not run
    code = ("import sys\n"
            "from sepbn.cli import build_parser, chosen_command\n"
            "build_parser(chosen_command([]))\n"
            "print(sorted(m for m in sys.modules if m.startswith('sepbn.commands.')))\n"
            "build_parser(chosen_command(['--debug', 'synth', '--out', 'x']))\n"
            "print(sorted(m for m in sys.modules if m.startswith('sepbn.commands.')), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "['sepbn.commands.synth'] False"]
