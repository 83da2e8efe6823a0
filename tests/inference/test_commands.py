"""`sepbn predict` and `sepbn export` end to end on a tiny checkpoint."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sepbn.cli import main


def _image(path, seed, size=(48, 64)):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    _image(d / "a.png", 0)
    _image(d / "sub" / "b.jpg", 1, (40, 40))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("not an image")
    return d


def test_predict_folder_with_a_corrupt_image(checkpoint, folder, tmp_path, capsys):
    jsonl, out = tmp_path / "pred.jsonl", tmp_path / "drawn"
    code = main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--detector", "full",
                 "--recursive", "--jsonl", str(jsonl), "--out", str(out), "--no-progress", str(folder)])
    assert code == 0
    captured = capsys.readouterr()
    assert "processed 2 image(s)" in captured.out and "1 failed" in captured.out
    assert "broken.jpg" in captured.err
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(r["file"].split("/")[-1] for r in rows) == ["a.png", "b.jpg"]
    for r in rows:
        assert r["status"] == "ok" and r["protocol"] == "5pt" and r["point_names"][0] == "left_eye"
        (face,) = r["faces"]
        assert np.asarray(face["landmarks"]).shape == (5, 2)
        assert face["box"] == [0.0, 0.0, r["width"] - 1.0, r["height"] - 1.0]
    assert (out / "a.png").is_file() and (out / "sub" / "b.jpg").is_file()
    assert not (out / "broken.jpg").exists()


def test_predict_with_boxes_file_and_images_without_boxes(checkpoint, folder, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[5, 5, 30, 30], [30, 10, 60, 40]], "b.jpg": [],
                                 "c.png": [[10, 10, 10, 30]]}))  # c: a degenerate box
    _image(folder / "c.png", 2)
    jsonl = tmp_path / "p.jsonl"
    code = main(["predict", "--checkpoint", str(checkpoint), "--protocol", "300w68", "--boxes", str(boxes),
                 "--detector", "full", "--jsonl", str(jsonl), "--no-progress",
                 str(folder / "a.png"), str(folder / "sub" / "b.jpg"), str(folder / "missing.png"),
                 str(folder / "c.png")])
    assert code == 0
    rows = {r["file"].split("/")[-1]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    assert [f["box"] for f in rows["a.png"]["faces"]] == [[5, 5, 30, 30], [30, 10, 60, 40]]
    assert rows["b.jpg"]["status"] == "no_face" and rows["b.jpg"]["faces"] == []
    out = capsys.readouterr().out
    assert "1 without a face" in out and "2 failed" in out and "c.png" not in rows


def test_predict_video(checkpoint, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    assert writer.isOpened()
    for k in range(4):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    jsonl, out = tmp_path / "v.jsonl", tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--detector", "full",
                 "--jsonl", str(jsonl), "--out", str(out), "--frame-step", "2", "--no-progress", str(video)])
    assert code == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 2]
    drawn = list(out.glob("clip.*"))
    assert len(drawn) == 1
    cap = cv2.VideoCapture(str(drawn[0]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()
    assert sorted(p.name for p in out.iterdir()) == [drawn[0].name]  # no temporary file left


def test_interrupted_video_leaves_no_half_written_output(checkpoint, tmp_path, monkeypatch):
    import sepbn.commands.predict as predict

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for k in range(4):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    calls = []
    real = predict.draw_faces

    def draw_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C after the first frame was written
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "draw_faces", draw_then_stop)  # the name the command calls
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--detector", "full",
                 "--out", str(out), "--batch-size", "4", "--no-progress", str(video)]) == 130  # sepbn.cli
    assert len(calls) == 2 and list(out.iterdir()) == []


def test_predict_reports_unusable_checkpoint_or_protocol(checkpoint, folder, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(checkpoint), "--protocol", "cofw", "--detector", "full",
                 str(folder)]) == 2
    assert "['300w68', '5pt']" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:1000])
    assert main(["predict", "--checkpoint", str(bad), "--detector", "full", str(folder)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_every_input_failing_exits_1(checkpoint, tmp_path):
    (tmp_path / "x.png").write_bytes(b"garbage")
    assert main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--detector", "full",
                 "--no-progress", str(tmp_path / "x.png")]) == 1


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_command_prints_parity(checkpoint, tmp_path, capsys, fmt):
    out = tmp_path / f"m.{fmt}"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out),
                 "--protocol", "5pt", *(["--no-fuse"] if fmt == "torchscript" else [])]) == 0
    text = capsys.readouterr().out
    assert f"parity {fmt} vs eager: batch 1:" in text and "OK" in text
    info = json.loads((tmp_path / f"m.{fmt}.json").read_text())
    assert info["crop"]["input_size"] == 64 and info["point_names"][2] == "nose_tip"
    assert out.is_file()


def test_export_command_protocol_mismatch(checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--protocol", "aflw19"]) == 2
    assert "has no protocol 'aflw19'; it has ['300w68', '5pt']" in capsys.readouterr().err


def test_default_detector_is_the_bundled_haar_cascade(checkpoint, folder, tmp_path, capsys):
    jsonl = tmp_path / "haar.jsonl"
    code = main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--no-progress",
                 "--recursive", "--jsonl", str(jsonl), str(folder)])
    # The plain test images hold no face: the cascade runs, finds none, and says so per image.
    assert code == 0
    rows = {Path(r["file"]).name: r for r in map(json.loads, jsonl.read_text().splitlines())}
    assert rows["a.png"]["status"] == "no_face" and rows["b.jpg"]["status"] == "no_face"
    assert "broken.jpg" not in rows and "1 failed" in capsys.readouterr().out


def test_boxes_file_reads_jsonl_and_our_own_output(tmp_path):
    from sepbn.commands.predict import read_boxes_file

    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"image": "x.png", "boxes": [[1, 2, 3, 4]]}) + "\n\n"
                    + json.dumps({"file": "y.png", "faces": [{"box": [5, 6, 7, 8]}, {"box": [0, 0, 9, 9]}]}) + "\n")
    boxes = read_boxes_file(path)
    np.testing.assert_allclose(boxes["x.png"], [[1, 2, 3, 4]])
    assert boxes["y.png"].shape == (2, 4)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(ValueError, match="bad.json"):
        read_boxes_file(bad)


def test_boxes_without_detector_fail_per_image_and_per_video(checkpoint, folder, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (32, 32))
    writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[5, 5, 30, 30]]}))
    code = main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--boxes", str(boxes),
                 "--no-progress", str(folder / "a.png"), str(folder / "sub" / "b.jpg"), str(video)])
    assert code == 0
    captured = capsys.readouterr()
    assert "processed 1 image(s)" in captured.out and "2 failed" in captured.out
    assert "b.jpg: no boxes for it in --boxes and no --detector" in captured.err
    assert "clip.avi: frame 0: no boxes" in captured.err


def test_predict_with_a_yunet_model_file(checkpoint, fake_yunet, tmp_path):
    image = np.zeros((200, 250, 3), np.uint8)
    image[64:96, 96:128] = 255  # the fake YuNet's one firing cell: a 40 x 48 box centred at (112, 80)
    cv2.imwrite(str(tmp_path / "face.png"), image)
    jsonl = tmp_path / "p.jsonl"
    assert main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--detector", "yunet",
                 "--yunet-model", str(fake_yunet), "--jsonl", str(jsonl), "--no-progress",
                 str(tmp_path / "face.png")]) == 0
    (row,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    (face,) = row["faces"]
    x0, y0, x1, y1 = face["box"]
    assert row["status"] == "ok" and face["score"] == pytest.approx(1.0, abs=1e-5)
    assert (x0 + x1) / 2 == pytest.approx(112, abs=0.5) and 36 <= x1 - x0 <= 48  # calibrated YuNet box
    assert len(face["landmarks"]) == 5


class _FullDisk:
    """What ``open`` returns on a full disk: the file opens, its writes fail with ENOSPC."""

    def __init__(self, path, mode="r", **kwargs):
        self.f = open(path, mode, **kwargs)

    def write(self, data):
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_outputs_onto_a_full_disk_name_the_file_in_one_line(checkpoint, folder, tiny_faces, tmp_path, monkeypatch,
                                                           capsys):
    import sepbn.io

    monkeypatch.setattr(sepbn.io, "open", _FullDisk, raising=False)
    out = tmp_path / "drawn"
    assert main(["predict", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--detector", "full",
                 "--out", str(out), "--no-progress", str(folder / "a.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the detector's description
    assert err.startswith(f"sepbn predict: {out / 'a.png'}: cannot write it (no space left on the device; needs about ")
    assert err.endswith("nothing was written there")
    report = tmp_path / "eval.json"
    report.write_text("previous")
    assert main(["eval", "--checkpoint", str(checkpoint), "--protocol", "5pt", "--data", f"csv:{tiny_faces['5pt']}",
                 "--json", str(report)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sepbn eval: {report}: cannot write it (no space left on the device; needs about ")
    assert err.endswith("the previous version is intact") and report.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_torchscript_export_onto_a_full_disk_is_one_line_not_an_abort(checkpoint, tmp_path):
    """TorchScript's own file writer aborts the process (c10::Error, exit 134) when a write fails."""
    from filelimit import run_with_file_limit

    dest = tmp_path / "m.ts"
    dest.write_bytes(b"previous")
    code = ("import sys; from sepbn.cli import main; sys.exit(main(['export', '--checkpoint', "
            f"{str(checkpoint)!r}, '--protocol', '5pt', '--format', 'torchscript', '--out', {str(dest)!r}]))")
    res = run_with_file_limit(code, limit=16 * 1024)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    assert err[-1].startswith(f"sepbn export: {dest}: cannot write it (") and "previous version is intact" in err[-1]
    assert dest.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.ts"]


def test_an_unusable_checkpoint_exits_2_from_eval_predict_and_export(tiny_faces, folder, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    commands = {
        "eval": ["eval", "--checkpoint", str(bad), "--data", f"csv:{tiny_faces['5pt']}"],
        "predict": ["predict", "--checkpoint", str(bad), "--detector", "full", "--no-progress", str(folder / "a.png")],
        "export": ["export", "--checkpoint", str(bad), "--format", "onnx", "--out", str(tmp_path / "m.onnx")],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"sepbn {name}: ") and str(bad) in err[0], err
