"""Export: ONNX / TorchScript of one protocol's branch equal eager PyTorch at batch 1 and 3."""

import warnings
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F

from sepbn.inference.export import (
    SingleProtocolModule,
    adaptive_max_pool2d_windows,
    check_parity,
    export_model,
)
from sepbn.models import create_model
from sepbn.nn import sepbn_modules
from tests.nn.test_fuse import randomize

SIZE = 64  # the smallest input the Vanilla CNN's six 2x poolings accept


@pytest.mark.parametrize("shape,out", [((2, 3, 7, 7), (3, 3)), ((1, 2, 16, 16), (3, 3)), ((2, 1, 6, 9), (3, 2)),
                                       ((1, 1, 4, 4), (4, 4)), ((1, 2, 2, 2), (3, 3))])
def test_window_decomposition_equals_adaptive_max_pool(shape, out):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    values, indices = adaptive_max_pool2d_windows(x, out)
    ref_v, ref_i = F.adaptive_max_pool2d(x, out, return_indices=True)
    torch.testing.assert_close(values, ref_v, rtol=0, atol=0)
    torch.testing.assert_close(indices, ref_i, rtol=0, atol=0)


def _model(norm: str) -> torch.nn.Module:
    """A tiny two-head LandmarkNet whose SepBN branches really differ (trained nets do; fresh ones barely)."""
    torch.manual_seed(0)
    model = create_model("vanilla", ["300w68", "5pt"], norm=norm, width=1 / 16, input_size=SIZE)
    model.train()
    with torch.no_grad():
        model(torch.randn(6, 3, SIZE, SIZE))  # running statistics away from 0 / 1
        for _, layer in sepbn_modules(model):
            layer.weight.normal_(1.0, 0.5)
            layer.bias.normal_(0.0, 0.5)
            for p in layer.attention.parameters():
                p.normal_(0.0, 0.5)
        for head in model.heads.values():  # spread the outputs over the crop, as a trained head does
            last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.mul_(100.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(norm, fmt) -> (model, path, parity report); each export runs once per module (ONNX takes seconds)."""
    cache = {}

    def get(norm, fmt):
        if (norm, fmt) not in cache:
            model = _model(norm)
            path = tmp_path_factory.mktemp("export") / f"model.{fmt}"
            cache[norm, fmt] = model, path, export_model(model, "5pt", fmt, path, SIZE)
        return cache[norm, fmt]

    return get


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("norm", ["bn", "sepbn"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_branch_matches_eager(exported, norm, fmt):
    model, path, report = exported(norm, fmt)
    assert report.ok, str(report)
    assert set(report.max_abs_diff) == {1, 3}
    assert "OK" in str(report)
    # one head only, dynamic batch: 5 points for any batch size, equal to the eager head
    x = torch.randn(5, 3, SIZE, SIZE)
    with torch.no_grad():
        want = model(x)["5pt"]
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
    else:
        got = torch.jit.load(str(path))(x)
    assert got.shape == (5, 5, 2)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert (want[0] - want[1]).abs().max() > 1e-3  # the outputs depend on the input


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("head", ["integral", "integral_fine"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_integral_head_exports_with_parity(fmt, head, tmp_path):
    torch.manual_seed(0)
    model = create_model("vanilla", ["5pt"], norm="sepbn", width=1 / 16, input_size=SIZE, head=head)
    model.train()
    with torch.no_grad():
        model(torch.randn(6, 3, SIZE, SIZE))  # running statistics away from 0 / 1
        model.heads["5pt"].logits.weight.mul_(20.0)  # peaked heatmaps, as a trained head has
    report = export_model(model.eval(), "5pt", fmt, tmp_path / f"model.{fmt}", SIZE)
    assert report.ok, str(report)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_pool_first_blocks_export_with_parity(fmt, tmp_path):
    model = _model("sepbn")
    with torch.no_grad():  # all gammas positive: every block pools before its affine (sepbn.nn.fuse)
        for _, layer in sepbn_modules(model):
            layer.weight.abs_().add_(0.05)
    report = export_model(model, "5pt", fmt, tmp_path / f"model.{fmt}", SIZE)
    assert report.ok, str(report)


def test_sepbn_attention_is_in_the_onnx_graph(exported):
    model, path, _ = exported("sepbn", "onnx")
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Softmax") == len(sepbn_modules(model)) == 6  # one pi per SepBN layer
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5  # the 5pt head only


def test_parity_check_can_fail(tmp_path):
    exported, other = _model("bn"), _model("bn")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    path = tmp_path / "m.pt"
    export_model(exported, "5pt", "torchscript", path, SIZE, check=False)
    report = check_parity(SingleProtocolModule(other, "5pt"), "torchscript", path, SIZE)
    assert not report.ok and "FAILED" in str(report)


def test_torchscript_export_of_sepbn_warns_nothing(tmp_path):
    # the attention's window layout is fixed by the input size; tracing it must not alarm the user
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(_model("sepbn"), "5pt", "torchscript", tmp_path / "m.pt", SIZE)
    ours = [w for w in caught if "sepbn" in Path(w.filename).parts]
    assert ours == [], [str(w.message) for w in ours]


def test_unknown_format_is_named(tmp_path):
    with pytest.raises(ValueError, match="'tflite'"):
        export_model(_model("bn"), "5pt", "tflite", tmp_path / "x", SIZE)


def test_bruteforce_branch_is_exported(tmp_path, bruteforce_model):
    model = bruteforce_model
    report = export_model(model, "5pt", "torchscript", tmp_path / "b.pt", SIZE, domain=2)
    assert report.ok, str(report)
    other = check_parity(SingleProtocolModule(model, "5pt", domain=0), "torchscript", tmp_path / "b.pt", SIZE)
    assert not other.ok  # the file holds branch 2, not branch 0


def _optimised_ops(path, tmp_path):
    """Node types of the graph ONNX Runtime actually runs (its own fusions applied)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def test_fused_onnx_graph_has_one_mul_and_add_per_sepbn_layer(exported, tmp_path):
    model, path, report = exported("sepbn", "onnx")  # fused by default; parity is against the unfused model
    assert report.ok, str(report)
    unfused = tmp_path / "unfused.onnx"
    assert export_model(model, "5pt", "onnx", unfused, SIZE, fuse=False).ok
    fused_ops, plain_ops = [n.op_type for n in onnx.load(str(path)).graph.node], [
        n.op_type for n in onnx.load(str(unfused)).graph.node]
    for ops in (fused_ops, _optimised_ops(path, tmp_path)):
        assert "BatchNormalization" not in ops
        assert ops.count("Mul") == len(sepbn_modules(model)) == 6  # x_hat * gamma_hat: the only multiply
        assert "Sub" not in ops  # (x - mu) / sigma is inside the convolutions now
    assert plain_ops.count("Sub") >= 6  # ... and was not before


def test_bn_model_exports_without_batchnormalization(exported):
    model, path, _ = exported("bn", "onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    convs = [m for part in (model.backbone, model.heads["5pt"]) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    assert "BatchNormalization" not in ops and ops.count("Conv") == len(convs) == 7  # 6 blocks + the adapter


# ONNX nodes per SepBN layer of the folded export (sepbn graph - BN twin graph) / layers; before issue 18:
# vanilla 52.7, mobilenetv2 41.6, resnext50 41.6 (row and column slices, Max, Gather, Transpose). After the
# merged attention matmul, with one Slice + ReduceMax per window of a side T does not divide: 20.2, 20.8,
# 24.4. Now every side at T = 3 pools with one padded MaxPool (deploy._pool_params): 14.0, 14.7, 17.9
# (resnext50's wide layers keep two matmuls).
NETWORK_NODES = {
    "vanilla": (dict(arch="vanilla", width=1 / 16), 64, 14),
    "mobilenetv2": (dict(arch="mobilenetv2", width=0.25, placement=["bn3"]), 32, 15),
    "resnext50": (dict(arch="resnext50", placement=["bn3"]), 32, 18),
}


@pytest.mark.parametrize("name", NETWORK_NODES)
def test_onnx_nodes_per_sepbn_layer_are_pinned_and_match_eager(name, tmp_path):
    kwargs, size, most = NETWORK_NODES[name]
    nodes = {}
    for norm in ("bn", "sepbn"):
        torch.manual_seed(0)
        args = kwargs if norm == "sepbn" else {k: v for k, v in kwargs.items() if k != "placement"}
        model = create_model(protocols=["300w68"], norm=norm, input_size=size, **args)
        if norm == "sepbn":
            model = randomize(model)  # statistics, mapping sets and attention as after training
        path = tmp_path / f"{norm}.onnx"
        report = export_model(model, "300w68", "onnx", path, size)  # folded; parity vs the unfolded model
        assert report.ok and set(report.max_abs_diff) == {1, 3}, str(report)
        graph = onnx.load(str(path)).graph
        nodes[norm] = [n.op_type for n in graph.node]
        constants = {t.name for t in graph.initializer}
        # a Gather of an activation (not of a stored tensor, like a row of the mixing matrix)
        nodes[norm + "-gathers"] = [n.name for n in graph.node
                                    if n.op_type == "Gather" and n.input[0] not in constants]
    layers = len(sepbn_modules(model))
    per_layer = (len(nodes["sepbn"]) - len(nodes["bn"])) / layers
    assert per_layer <= most, (per_layer, nodes["sepbn"])
    assert not nodes["sepbn-gathers"]  # pooling reads windows, not indices (ORT's Gather is slow there)
    assert not {"Transpose", "Max"} & set(nodes["sepbn"])
    assert nodes["sepbn"].count("Mul") == layers  # the per-sample affine: one Mul and one Add, no reshuffle

