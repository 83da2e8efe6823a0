"""Export one protocol's landmark branch to ONNX or TorchScript, with a parity check.

Paper: Separable Batch Normalization (SepBN), eq. (6)-(7): every SepBN layer mixes its K mapping
sets with weights pi(X) computed from the layer's own input. That attention is part of the
exported graph (adaptive max-pool, 1x1 conv, MLP, softmax at the layer's temperature), so the
exported model is input-dependent exactly as in eager mode. By default the model is first passed through
``sepbn.nn.fuse_for_inference``: every BN folds into its convolution, and every SepBN's normalisation
too (the attention's first linear map absorbs sigma and mu), so the graph has no BatchNormalization
node and each SepBN layer costs one Mul and one Add per activation (the per-sample mixed affine) plus
its attention. ONNX Runtime (1.32, CPU) fuses neither into the convolution: Mul/Add take (N, C, 1, 1)
values computed at run time, and its Conv+Mul/Add fusions need constant initialisers.

What is exported: :class:`SingleProtocolModule` — ``image (N, 3, S, S) float32 -> landmarks (N, L, 2)``
in normalised crop coordinates (``u = (x + 0.5) / S * 2 - 1``, see ``sepbn.data.transforms``), with a
dynamic batch size. The model is put in eval mode first (running BN statistics; the temperature each
SepBN layer holds at export time is baked in as a constant).

ONNX: the torch.export-based exporter (``dynamo=True``), opset 18. ``aten.adaptive_max_pool2d`` has
no ONNX translation when the pooled size does not divide the input (SepBN pools 128, 64, ... px to
3 x 3), so the exported program is decomposed first with :func:`adaptive_max_pool2d_windows`: the
spatial size is static in the exported graph (only the batch is dynamic), so the pooling windows
are static slices followed by a max (separable: row bands, then columns). TorchScript: ``torch.jit.trace`` of the same module.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from ..io import atomic_path, atomic_write_bytes
from ..nn import domains, fuse_for_inference

__all__ = [
    "SingleProtocolModule",
    "ParityReport",
    "adaptive_max_pool2d_windows",
    "export_onnx",
    "export_torchscript",
    "export_model",
    "check_parity",
    "FORMATS",
]

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
INPUT_NAME = "image"
OUTPUT_NAME = "landmarks"
ONNX_OPSET = 18


class SingleProtocolModule(nn.Module):
    """A LandmarkNet restricted to one head: ``forward(image) -> (N, L, 2)`` normalised coords.

    ``model`` is anything with ``forward(x, protocols=name) -> {name: Tensor}`` (LandmarkNet's
    contract); the head is chosen once here so the exported graph has one input and one output.
    ``domain``: the branch every brute-force SepBN layer uses (paper III-A; such layers need a
    domain label, see ``sepbn.nn.domains``); None for networks without them.
    """

    def __init__(self, model: nn.Module, protocol: str, domain: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.protocol = str(protocol)
        self.domain = domain

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.domain is None:
            return self.model(image, self.protocol)[self.protocol]
        with domains(self.domain):
            return self.model(image, self.protocol)[self.protocol]

    def extra_repr(self) -> str:
        return f"protocol={self.protocol!r}" + ("" if self.domain is None else f", domain={self.domain}")


def _window(i: int, size: int, out: int) -> tuple[int, int]:
    # torch's adaptive pooling bins: [floor(i*H/T), ceil((i+1)*H/T)).
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_max_pool2d_windows(
    x: torch.Tensor, output_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``aten.adaptive_max_pool2d`` as static windows: values and flat indices (h * W + w).

    Equal to ``F.adaptive_max_pool2d(x, output_size, return_indices=True)`` for a static
    spatial size (ties aside); used as a decomposition so the ONNX exporter sees only slices and
    max. Separable: T_h row bands of the full tensor are reduced over H first (contiguous
    slices, the only pass over the activation), then T_w column windows of the small
    (N, C, T_h, W) result, so the exported graph copies the activation once, not T_h * T_w times.
    """
    H, W = int(x.shape[-2]), int(x.shape[-1])
    th, tw = (int(output_size[0]), int(output_size[1]))
    band_v, band_k = [], []
    for i in range(th):
        hs, he = _window(i, H, th)
        v, k = x[..., hs:he, :].max(-2)
        band_v.append(v)
        band_k.append(k + hs)
    rows_v, rows_k = torch.stack(band_v, -2), torch.stack(band_k, -2)  # (..., T_h, W)
    vals, idxs = [], []
    for j in range(tw):
        ws, we = _window(j, W, tw)
        v, c = rows_v[..., ws:we].max(-1)
        r = rows_k[..., ws:we].gather(-1, c.unsqueeze(-1)).squeeze(-1)
        vals.append(v)
        idxs.append(r * W + ws + c)
    return torch.stack(vals, -1), torch.stack(idxs, -1)


def _example(input_size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, input_size, input_size, generator=g)


def export_onnx(module: nn.Module, path: str | Path, input_size: int) -> Path:
    """Write ``module`` (image -> landmarks) to an ONNX file with a dynamic batch dimension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    x = _example(input_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        program = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    program = program.run_decompositions(
        {torch.ops.aten.adaptive_max_pool2d.default: adaptive_max_pool2d_windows}
    )
    with atomic_path(path) as tmp:
        _onnx_export(program, x, tmp)
    return path


def _onnx_export(program, x: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        program,
        (x,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=ONNX_OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def export_torchscript(module: nn.Module, path: str | Path, input_size: int) -> Path:
    """Write ``module`` traced with ``torch.jit.trace`` (batch size stays dynamic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still asked for
        # the attention's pooling windows follow H and W, which the model's input size fixes; batch stays free
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"sepbn\.nn\.(attention|deploy)")
        traced = torch.jit.trace(module, _example(input_size), check_trace=False)
    buffer = io.BytesIO()  # torch's file writer aborts the process (c10::Error) when the disk fills
    torch.jit.save(traced, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class ParityReport:
    """Max abs difference (normalised coordinates) between the exported file and eager PyTorch."""

    format: str
    path: str
    max_abs_diff: dict[int, float]  # batch size -> max |exported - eager|
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(d < self.tolerance for d in self.max_abs_diff.values())

    def __str__(self) -> str:
        diffs = ", ".join(f"batch {b}: {d:.2e}" for b, d in self.max_abs_diff.items())
        verdict = "OK" if self.ok else "FAILED"
        return f"parity {self.format} vs eager: {diffs} (tolerance {self.tolerance:.0e}) {verdict}"


def _run_exported(fmt: Format, path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda x: loaded(x)


def check_parity(
    module: nn.Module,
    fmt: Format,
    path: str | Path,
    input_size: int,
    *,
    batch_sizes: Sequence[int] = (1, 3),
    tolerance: float = 1e-4,
    seed: int = 0,
) -> ParityReport:
    """Run the exported file and eager ``module`` on the same random images; report max abs diffs."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    module = module.eval()
    run = _run_exported(fmt, Path(path))
    diffs: dict[int, float] = {}
    with torch.no_grad():
        for i, b in enumerate(batch_sizes):
            x = _example(input_size, b, seed=seed + 1 + i)
            diffs[int(b)] = float((run(x).float() - module(x).float()).abs().max())
    return ParityReport(fmt, str(path), diffs, tolerance)


def export_model(
    model: nn.Module,
    protocol: str,
    fmt: Format,
    path: str | Path,
    input_size: int,
    *,
    check: bool = True,
    tolerance: float = 1e-4,
    domain: int | None = None,
    fuse: bool = True,
) -> ParityReport | None:
    """Export ``model``'s ``protocol`` head to ``path`` (onnx or torchscript); return the parity check.

    The model is moved to CPU float32 and eval mode (a copy is not made: pass a model you own).
    ``domain`` picks the brute-force SepBN branch (see :class:`SingleProtocolModule`). With ``fuse``
    (default) the exported graph is ``sepbn.nn.fuse_for_inference(model)``: BN and SepBN normalisation
    folded into the convolutions; the parity check then compares the file with the *unfused* eager model,
    so it covers the fold and the export together.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    reference = SingleProtocolModule(model.float().cpu().eval(), protocol, domain).eval()
    module = SingleProtocolModule(fuse_for_inference(reference.model), protocol, domain).eval() if fuse else reference
    writer = export_onnx if fmt == "onnx" else export_torchscript
    out = writer(module, path, input_size)
    return check_parity(reference, fmt, out, input_size, tolerance=tolerance) if check else None
