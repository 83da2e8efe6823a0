"""ONNX Runtime as an inference backend: the folded network exported once, cached, run by a session.

`LandmarkDetector(..., backend="onnxruntime")` (and ``"auto"``, the default of ``sepbn predict`` and
``load_pretrained``) runs the network through ONNX Runtime on CPU instead of eager PyTorch. At batch 1 the
folded networks of the README's deploy table run 1.25-2.5x faster there (ONNX Runtime's per-node cost is a few
microseconds against eager PyTorch's Python and dispatcher cost per operator), and a SepBN layer costs less
beside its BN twin (docs/inference.md, issue 18).

The export (``torch.onnx``, a few seconds) happens once per network and is cached under
``$SEPBN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/sepbn`` or ``~/.cache/sepbn``), in ``onnx/<key>.onnx``, where
the key hashes everything the graph depends on: the weights and buffers, the module structure, protocol,
domain, input size, the torch and opset versions and sepbn's own source (so an edited checkout never reuses
a graph an older version exported). A new export is checked against eager PyTorch
on random images before it is used (``check_parity``); files are written atomically, so a killed export
leaves no partial file behind; a damaged file is exported again, and an unwritable cache folder gets a
temporary export (with a warning) that is not kept. An export is announced by an INFO record of this
module's logger (``sepbn predict`` prints it).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .export import INPUT_NAME, ONNX_OPSET, SingleProtocolModule, check_parity, export_onnx

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "OrtModel", "cache_dir", "model_key", "ort_missing", "resolve_backend", "session"]

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")
# what the export and the session need (the ``export`` extra)
ORT_PACKAGES: tuple[str, ...] = ("onnxruntime", "onnx", "onnxscript")


def ort_missing() -> list[str]:
    """The packages of ``ORT_PACKAGES`` that are not installed (empty: the backend can run)."""
    return [name for name in ORT_PACKAGES if importlib.util.find_spec(name) is None]


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"`` or ``"onnxruntime"``: ``"auto"`` picks ONNX Runtime on CPU when it is installed."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and not ort_missing() else "torch"
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on CPU, not {device}; use backend='torch'")
        if ort_missing():
            raise ValueError(f"the onnxruntime backend needs {', '.join(ort_missing())}: "
                             "pip install 'sepbn[export]'")
    return backend


def cache_dir() -> Path:
    """Where exported networks are cached: ``$SEPBN_CACHE_DIR``, else ``$XDG_CACHE_HOME/sepbn``, else
    ``~/.cache/sepbn``."""
    if os.environ.get("SEPBN_CACHE_DIR"):
        return Path(os.environ["SEPBN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sepbn"


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """A hash of the sepbn package's Python source (a few hundred kB, read once per process)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def model_key(module: SingleProtocolModule, input_size: int) -> str:
    """A hash of everything the exported graph depends on (see the module docstring)."""
    digest = hashlib.sha256()
    header = (_source_digest(), torch.__version__, ONNX_OPSET, int(input_size), repr(module))
    digest.update(repr(header).encode())
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


def session_options(threads: int, *, spin: bool = True):
    """ONNX Runtime options with ``threads`` intra-op threads that spin between the nodes of a call and stop
    when it returns (a photo's face detection runs between calls); ``spin=False``: they never spin."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
    # spinning saves a thread wake-up per parallel node (benchmarks/deploy_overhead.py --ort-no-spin compares);
    # without the stop, idle workers would go on spinning for tens of milliseconds after each call
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def session(path: str | os.PathLike, threads: int, *, spin: bool = True):
    """An ``InferenceSession`` on CPU with the threads of :func:`session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads, spin=spin), providers=["CPUExecutionProvider"])


def cached_export(module: SingleProtocolModule, input_size: int, folder: Path | None = None) -> Path:
    """The ONNX file of ``module`` in the cache, exported and parity-checked when absent."""
    path = (folder or cache_dir()) / "onnx" / f"{model_key(module, input_size)}.onnx"
    if path.is_file():
        return path
    # the one slow step of a first use (seconds); `sepbn predict` shows INFO records on stderr
    log.info("exporting the network to ONNX once, cached in %s", path.parent)
    export_onnx(module, path, input_size)
    report = check_parity(module, "onnx", path, input_size)
    if not report.ok:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"the ONNX export of this network does not match eager PyTorch: {report}")
    return path


class OrtModel:
    """``module`` (image (N, 3, S, S) -> landmarks (N, L, 2)) run by ONNX Runtime; call it with a tensor."""

    def __init__(self, module: SingleProtocolModule, input_size: int, *, threads: int | None = None,
                 folder: Path | None = None) -> None:
        self.threads = int(threads or torch.get_num_threads())
        folder = folder or cache_dir()
        try:
            self.path = cached_export(module, input_size, folder)
        except OSError as e:  # an unwritable cache: export to a temporary folder for this session only
            warnings.warn(f"cannot write the ONNX cache in {folder} ({e}); exporting to a temporary folder, "
                          "which is not kept (set SEPBN_CACHE_DIR)", RuntimeWarning, stacklevel=3)
            with tempfile.TemporaryDirectory() as tmp:
                self.path = cached_export(module, input_size, Path(tmp))
                self.session = session(self.path, self.threads)  # the session holds the graph once loaded
            return
        try:
            self.session = session(self.path, self.threads)
        except Exception:  # a damaged cache file (the export itself is atomic): export it again, once
            self.path.unlink(missing_ok=True)
            self.path = cached_export(module, input_size, folder)
            self.session = session(self.path, self.threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = {INPUT_NAME: x.detach().float().cpu().contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def __repr__(self) -> str:
        return f"OrtModel({self.path.name}, threads={self.threads})"
