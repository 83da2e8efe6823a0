"""RunLogger: CSV rows, resume trimming (later steps and a cut last line dropped), header kept."""

import csv

from sepbn.train.logger import RunLogger, trim_log


def _steps(path):
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _write_log(path, steps, tail=""):
    lines = ["step,loss,lr"] + [f"{s},{0.1 * s:.3f},0.001" for s in steps]
    path.write_text("\r\n".join(lines) + "\r\n" + tail)


def test_trim_drops_later_steps_and_a_cut_line(tmp_path):
    path = tmp_path / "train.csv"
    _write_log(path, range(1, 6), tail="6,0.6")  # no line end: killed mid-row
    assert trim_log(path, 3) == 3
    assert _steps(path) == [1, 2, 3] and path.read_text().startswith("step,loss,lr")
    assert trim_log(path, 3) == 0  # nothing more to drop: the file is left alone


def test_trim_of_a_cut_header_empties_the_file(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("epoch,st")
    trim_log(path, 10)
    assert path.read_text() == ""


def test_resumed_logger_continues_after_the_checkpoint_step(tmp_path):
    _write_log(tmp_path / "train.csv", range(1, 8), tail="8,0.")
    log = RunLogger(tmp_path, resume_step=4)
    log.log("train", {"step": 5, "loss": 0.5, "lr": 0.001, "extra": 1}, 5)  # unknown field ignored
    assert _steps(tmp_path / "train.csv") == [1, 2, 3, 4, 5]
    with open(tmp_path / "train.csv", newline="") as f:
        assert next(csv.reader(f)) == ["step", "loss", "lr"]


def test_new_run_starts_the_log_afresh(tmp_path):
    _write_log(tmp_path / "train.csv", range(1, 4))
    log = RunLogger(tmp_path)
    log.log("train", {"step": 1, "loss": 0.2}, 1)
    with open(tmp_path / "train.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{"step": "1", "loss": "0.2"}]
