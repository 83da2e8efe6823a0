"""The ONNX Runtime backend: same landmarks as PyTorch, one export per network (cached), clear choices."""

import logging
import resource
import time

import cv2
import numpy as np
import pytest
import torch

from sepbn.cli import main
from sepbn.inference import runtime
from sepbn.inference.export import SingleProtocolModule
from sepbn.inference.predictor import CropSpec, LandmarkDetector
from sepbn.models import create_model
from sepbn.nn import sepbn_modules

SIZE = 64


def _model(seed: int = 0) -> torch.nn.Module:
    """A tiny two-head SepBN LandmarkNet whose branches and heads really differ (as after training)."""
    torch.manual_seed(seed)
    model = create_model("vanilla", ["300w68", "5pt"], norm="sepbn", width=1 / 16, input_size=SIZE)
    with torch.no_grad():
        model.train()(torch.randn(6, 3, SIZE, SIZE))  # running statistics away from 0 / 1
        for _, layer in sepbn_modules(model):
            layer.weight.normal_(1.0, 0.5)
            layer.bias.normal_(0.0, 0.5)
        for head in model.heads.values():
            [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(100.0)
    return model.eval()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPBN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _detector(model, backend, protocol="5pt", **kwargs):
    return LandmarkDetector(model, protocol, CropSpec(SIZE), backend=backend, **kwargs)


@pytest.mark.parametrize("flip", [False, True])
def test_onnxruntime_backend_gives_the_landmarks_of_pytorch(cache, flip):
    model = _model()
    ort_det, torch_det = _detector(model, "onnxruntime", flip=flip), _detector(model, "torch", flip=flip)
    assert ort_det.backend == "onnxruntime" and torch_det.backend == "torch" and "onnxruntime" in repr(ort_det)
    inputs = np.random.default_rng(0).normal(size=(5, 3, SIZE, SIZE)).astype(np.float32)
    for batch in (1, 2, 64):  # one face, split batches, all at once
        ort_det.batch_size = torch_det.batch_size = batch
        a, b = ort_det.forward_crops(inputs), torch_det.forward_crops(inputs)
        assert a.shape == b.shape == (5, 5, 2)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert np.abs(a).max() > 0.05 and len(list(cache.glob("*.onnx"))) == 1


def test_the_export_is_cached_and_keyed_by_weights_and_head(cache, monkeypatch):
    model = _model()
    first = _detector(model, "onnxruntime").runtime.path
    calls = []
    real_export = runtime.export_onnx
    monkeypatch.setattr(runtime, "export_onnx", lambda *a, **k: calls.append(a) or real_export(*a, **k))
    assert _detector(model, "onnxruntime").runtime.path == first and not calls  # reused, not exported again
    assert _detector(model, "onnxruntime", protocol="300w68").runtime.path != first  # another head
    with torch.no_grad():
        model.backbone.blocks[0][0].weight.add_(0.01)
    assert _detector(model, "onnxruntime").runtime.path != first  # other weights
    assert len(calls) == 2 and len(list(cache.glob("*.onnx"))) == 3
    assert not list(cache.glob("*.tmp*"))  # atomic writes leave nothing half-written


def test_model_key_follows_weights_protocol_domain_and_code(monkeypatch):
    model = _model()
    key = runtime.model_key(SingleProtocolModule(model, "5pt"), SIZE)
    assert key == runtime.model_key(SingleProtocolModule(model, "5pt"), SIZE)
    assert key != runtime.model_key(SingleProtocolModule(_model(seed=1), "5pt"), SIZE)
    assert key != runtime.model_key(SingleProtocolModule(model, "300w68"), SIZE)
    assert key != runtime.model_key(SingleProtocolModule(model, "5pt", domain=0), SIZE)
    assert key != runtime.model_key(SingleProtocolModule(model, "5pt"), 2 * SIZE)
    assert len(runtime._source_digest()) == 64
    monkeypatch.setattr(runtime, "_source_digest", lambda: "an edited checkout")
    assert key != runtime.model_key(SingleProtocolModule(model, "5pt"), SIZE)


def test_a_damaged_cache_file_is_exported_again(cache):
    model = _model()
    path = _detector(model, "onnxruntime").runtime.path
    path.write_bytes(b"not an onnx file")
    det = _detector(model, "onnxruntime")
    assert det.runtime.path == path and path.stat().st_size > 1000
    inputs = np.random.default_rng(1).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(det.forward_crops(inputs), _detector(model, "torch").forward_crops(inputs), atol=1e-4)


def test_backend_choice(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert runtime.resolve_backend("auto", cpu) == "onnxruntime" and runtime.resolve_backend("auto", gpu) == "torch"
    assert runtime.resolve_backend("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        runtime.resolve_backend("tensorrt", cpu)
    with pytest.raises(ValueError, match="runs on CPU"):
        runtime.resolve_backend("onnxruntime", gpu)
    real = runtime.importlib.util.find_spec
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name))
    assert runtime.ort_missing() == ["onnxscript"] and runtime.resolve_backend("auto", cpu) == "torch"
    with pytest.raises(ValueError, match=r"needs onnxscript: pip install 'sepbn\[export\]'"):
        runtime.resolve_backend("onnxruntime", cpu)


def test_auto_falls_back_to_pytorch_with_a_warning_and_an_explicit_request_fails(cache, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the ONNX export of this network does not match eager PyTorch")

    monkeypatch.setattr(runtime, "cached_export", broken)
    with pytest.warns(RuntimeWarning, match="ONNX Runtime cannot run this network .* using PyTorch"):
        assert _detector(_model(), "auto").backend == "torch"
    with pytest.raises(RuntimeError, match="does not match eager PyTorch"):
        _detector(_model(), "onnxruntime")


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SEPBN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.cache_dir() == tmp_path / "sepbn"
    monkeypatch.setenv("SEPBN_CACHE_DIR", str(tmp_path / "mine"))
    assert runtime.cache_dir() == tmp_path / "mine"


def test_an_unwritable_cache_exports_to_a_temporary_folder_and_says_so(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SEPBN_CACHE_DIR", str(blocker))
    model = _model()
    with pytest.warns(RuntimeWarning, match="cannot write the ONNX cache in .*not_a_folder"):
        det = _detector(model, "onnxruntime")
    assert det.backend == "onnxruntime" and not det.runtime.path.exists()  # the temporary file is gone
    inputs = np.random.default_rng(2).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(det.forward_crops(inputs), _detector(model, "torch").forward_crops(inputs), atol=1e-4)


def test_predict_says_when_it_exports_and_not_when_cached(cache, weights_folder, tmp_path, capsys):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (70, 64, 3), dtype=np.uint8))
    argv = ["predict", str(image), "--checkpoint", str(weights_folder), "--protocol", "5pt", "--detector", "full",
            "--backend", "onnxruntime", "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().err
    assert f"sepbn predict: exporting the network to ONNX once, cached in {cache}" in first
    assert main(argv) == 0
    assert "exporting" not in capsys.readouterr().err
    assert not logging.getLogger("sepbn").handlers  # the command's handler is gone afterwards


def test_session_threads_stop_spinning_when_a_call_returns(cache):
    """Spinning between the nodes of a call, none after it: an idle session takes no CPU from the detector."""

    def cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    path = runtime.cached_export(SingleProtocolModule(_model(), "5pt"), SIZE, cache.parent)
    sess = runtime.session(path, threads=2)
    assert sess.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"
    feed = {runtime.INPUT_NAME: np.zeros((1, 3, SIZE, SIZE), np.float32)}
    burnt = []
    for _ in range(5):
        sess.run(None, feed)
        start = cpu_s()
        time.sleep(0.1)
        burnt.append(cpu_s() - start)
    # a worker left spinning burns most of the 100 ms (38 ms measured with both cores busy); a stopped one ~0.1 ms
    assert sorted(burnt)[2] < 0.01, burnt
