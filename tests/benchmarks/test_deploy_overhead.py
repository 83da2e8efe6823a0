"""benchmarks/deploy_overhead.py: SepBN element count from the layer shapes, floor arithmetic, table rows."""

import importlib.util
import math
import sys
from pathlib import Path

import torch

from sepbn.models import create_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "deploy_overhead.py"


def load(_name, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_deploy_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_sepbn_elements_are_counted_from_the_layer_inputs(monkeypatch):
    bench = load("deploy_overhead", monkeypatch)
    net = create_model("vanilla", ["wflw98"], norm="sepbn", width=1 / 8, input_size=64)
    # blocks of 8, 16, ..., 256 channels at sides 64, 32, ..., 2 (the conv outputs SepBN normalises)
    want = sum(c * s * s for c, s in zip((8, 16, 32, 64, 128, 256), (64, 32, 16, 8, 4, 2)))
    assert bench.sepbn_elements(net, 64, "wflw98") == want == 64512
    bn_only = create_model("vanilla", ["wflw98"], norm="sepbn", placement=[5], width=1 / 8, input_size=64)
    assert bench.sepbn_elements(bn_only, 64, "wflw98") == 256 * 2 * 2


class StubNet:
    name, elements, target_index = "stub", 1000, 2

    def runner(self, key, mode, threads, batch, device):
        x = torch.ones(64 if key == "bn" else 256)
        return lambda: x.sum()


def test_measure_fills_ratio_and_floor_and_the_table_shows_it(monkeypatch):
    bench = load("deploy_overhead", monkeypatch)
    cells = [bench.Cell("stub", "infer-ort", "cpu", 1, 32, target=bench.INFER_TARGETS[32]),
             bench.Cell("stub", "train", "cpu", 2, 16, target=bench.TRAIN_TARGETS[StubNet.target_index])]
    for cell in cells:
        bench.measure(cell, StubNet(), repeats=3, bandwidth=2.0)  # 2 GB/s
    ort, train = cells
    assert ort.repeats == 3 and len(ort.bn_samples) == len(ort.sepbn_samples) == 3
    assert math.isclose(ort.ratio, ort.sepbn_ms / ort.bn_ms)
    assert math.isclose(ort.extra_mb, 12 * 1000 * 32 / 1e6) and math.isclose(train.extra_mb, 4 * 1000 * 16 / 1e6)
    assert math.isclose(ort.floor_ms, ort.extra_mb / 2.0)  # MB / (GB/s) = ms
    assert math.isclose(ort.floor_ratio, 1 + ort.floor_ms / ort.bn_ms)
    assert (ort.target, train.target) == (1.10, 1.15)
    info = {"cpu": "x", "logical_cpus": 2, "torch": "t", "onnxruntime": "o", "load_average_at_start": (0, 0, 0)}
    table = bench.markdown(cells, info, {"cpu 1 thread": 2.0})
    assert table.count("| stub |") == 2 and "| infer-ort | cpu | 1 | 32 |" in table and "2.0 GB/s" in table


def test_cells_carry_issue_18_targets(monkeypatch):
    bench = load("deploy_overhead", monkeypatch)

    class Named:
        def __init__(self, name):
            self.name, self.target_index = name, bench.NETS[name][1]

    cells = bench.cells_for(Named("mobilenetv2-bn3"), quick=False, device="cpu")
    infer = {(c.mode, c.threads, c.batch): c.target for c in cells if c.mode != "train"}
    assert len(infer) == 8 and {t for (_, _, b), t in infer.items() if b == 1} == {1.15}
    assert {t for (_, _, b), t in infer.items() if b == 32} == {1.10}
    assert [c.target for c in cells if c.mode == "train"] == [1.15]
    shipped = bench.cells_for(Named("shipped-300w68"), quick=False, device="cpu")
    # the shipped model's 1.10 applies in the backend sepbn predict picks (ONNX Runtime where installed)
    assert bench.PREDICT_MODE == "infer-ort"
    assert [(c.mode, c.threads, c.batch, c.target) for c in shipped] == [
        ("infer-eager", 1, 1, 1.15), ("infer-eager", 2, 1, 1.15), ("infer-ort", 1, 1, 1.10), ("infer-ort", 2, 1, 1.10)]
