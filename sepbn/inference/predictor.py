"""LandmarkDetector: landmarks on whole photos from a trained checkpoint, batched over faces.

Paper, section V-A: a face is "cropped according to the official bounding box and resized to the
size of 128 x 128"; the network regresses normalised coordinates in that crop. Inference repeats
the training crop without augmentation and maps the prediction back through the inverse matrix::

    M  = crop_matrix(box, S, box_scale)                   original image -> crop (2 x 3)
    u  = net(warp(image, M))                              (N, L, 2), u in [-1, 1]
    p  = M^-1 [decode_points(u, S); 1]                    original image pixels

so landmarks come back in the ORIGINAL image's 0-based pixel coordinates whatever the box's place
and size. Face boxes are given by the caller in the training box convention, or found by a face
detector and converted with a :class:`~sepbn.inference.detector.BoxCalibration`.

The crop settings come from the checkpoint: ``model_args["input_size"]`` is S, and the training
dataset of the chosen protocol in ``config["data"]["train"]`` gives ``box_scale`` and the box
convention (by its format, ``BOX_CONVENTIONS``: official rectangles for WFLW, COFW, AFLW, WIDER
FACE; the tight landmark box for 300-W ``.pts``; a square with context for the 300-W CSV and MTFL,
as docs/data.md lists them).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError, checkpoint_protocols, load_model
from ..data.records import read_image
from ..data.transforms import crop_matrix, invert_affine, normalize_image, to_original, warp_image
from ..models.tta import flip_average
from ..nn import BruteForceSepBN2d, RoutedAffine2d, domains, fuse_for_inference, sepbn_modules
from ..protocols import PROTOCOLS, Protocol, get_protocol, spec_name
from .detector import BOX_CONVENTIONS, DETECTOR_CALIBRATION, BoxCalibration, FaceDetector
from .export import SingleProtocolModule
from .runtime import OrtModel, resolve_backend

__all__ = [
    "CheckpointError",
    "CropSpec",
    "FaceLandmarks",
    "LandmarkDetector",
    "crop_spec_from_config",
    "load_checkpoint",
]



@dataclass(frozen=True)
class CropSpec:
    """How the training faces were cropped: S, the square box's enlargement, and the box kind."""

    input_size: int
    box_scale: float = 1.0
    box_convention: str = "official"  # one of BOX_CONVENTIONS' values, or "unknown"

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be >= 8, got {self.input_size}")
        if not self.box_scale > 0:
            raise ValueError(f"box_scale must be > 0, got {self.box_scale}")
        known = sorted(set(BOX_CONVENTIONS.values()) | {"unknown"})
        if self.box_convention not in known:
            raise ValueError(f"box_convention must be one of {known}, got {self.box_convention!r}")


@dataclass
class FaceLandmarks:
    """One face's prediction. ``landmarks`` (L, 2) float64 in original image pixels;
    ``box`` the crop's face box (training convention); ``score`` the detector's (1.0 for given boxes)."""

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    protocol: str
    point_names: tuple[str, ...] = field(repr=False, default=())

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        """JSON-able: ``{"protocol", "box", "score", "landmarks": [[x, y], ...], "point_names"}``."""
        return {
            "protocol": self.protocol,
            "box": [round(float(v), decimals) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": np.round(self.landmarks, decimals).tolist(),
            "point_names": list(self.point_names),
        }


def _same_protocol(a: str, b: str) -> bool:
    """Whether two spellings (names, aliases, file paths) name the same protocol; reads no file."""
    a, b = spec_name(a), spec_name(b)
    return a == b or any(p.answers_to(a) and p.answers_to(b) for p in PROTOCOLS.values())


def crop_spec_from_config(config: Mapping | None, protocol: str, input_size: int) -> CropSpec:
    """The crop of ``protocol``'s training data from a checkpoint's config dict (defaults when absent)."""
    data = (config or {}).get("data", {}) or {}
    for ds in data.get("train", ()) or ():
        if isinstance(ds, Mapping) and _same_protocol(spec_name(ds.get("protocol", "")), protocol):
            fmt = str(ds.get("fmt", "")).lower()
            scale = ds.get("box_scale")
            return CropSpec(int(input_size), 1.0 if scale is None else float(scale),
                            BOX_CONVENTIONS.get(fmt, "unknown"))
    return CropSpec(int(input_size), 1.0, "unknown")


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``sepbn.checkpoint.load_model`` with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return load_model(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - cut zips, bad JSON, safetensors and unpickling errors differ
        detail = str(e)
        for prefix in (f"{path}: ", f"{path / 'model.safetensors'}: "):  # the file is named once
            detail = detail.removeprefix(prefix)
        if not isinstance(e, (ValueError, RuntimeError, OSError)):
            detail = f"{type(e).__name__}: {detail}"
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {detail}") from e


def _choose_protocol(path: str | os.PathLike, available: Sequence[str], protocol: str | None) -> str:
    if protocol is None:
        if len(available) == 1:
            return available[0]
        raise CheckpointError(
            f"checkpoint {path} has several protocols {list(available)}; choose one (protocol= / --protocol)"
        )
    for name in available:
        if _same_protocol(name, protocol):
            return name
    raise CheckpointError(
        f"checkpoint {path} has no protocol {protocol!r}; it has {list(available)}"
    )


def _rgb(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got dtype {img.dtype}")
    return np.ascontiguousarray(img[:, :, :3])


class LandmarkDetector:
    """A trained landmark network, one of its protocols, and the crop it was trained on.

    Args:
        model: a LandmarkNet (``forward(x, protocol) -> {protocol: (N, L, 2)}``).
        protocol: the protocol to predict.
        crop: the training crop (:class:`CropSpec`).
        device: where the network runs.
        detector: a face detector used when ``predict`` gets no boxes.
        calibration: detector box -> training box; default the stated conversion for the
            detector and the crop's box convention (``DETECTOR_CALIBRATION``).
        batch_size: faces per forward pass.
        domain: the branch of every brute-force SepBN layer (paper III-A: K full BN branches routed
            by a domain label, unknown at test time); required for such networks, ignored otherwise.
        fuse: run ``sepbn.nn.fuse_for_inference(model)`` (BN and SepBN normalisation folded into the
            convolutions; same outputs, fewer passes). ``model`` itself is left unchanged.
        flip: average each face's prediction with the one on its mirror image
            (:func:`sepbn.models.tta.flip_average`; twice the network cost).
        channels_last: run a fused network on channels-last tensors (default): the same outputs, and
            on CPU both its convolutions and SepBN's pooling are faster (docs/inference.md, issue 18).
        backend: ``"torch"`` (eager PyTorch, default), ``"onnxruntime"`` (the network exported to ONNX once,
            cached, and run by ONNX Runtime on CPU: faster at small batches, see `sepbn.inference.runtime`)
            or ``"auto"`` (ONNX Runtime on CPU when it is installed, else PyTorch).
    """

    def __init__(self, model: nn.Module, protocol: Protocol | str, crop: CropSpec, *, device: str | torch.device = "cpu",
                 detector: FaceDetector | None = None, calibration: BoxCalibration | None = None,
                 batch_size: int = 64, domain: int | None = None, fuse: bool = True, flip: bool = False,
                 channels_last: bool = True, backend: str = "torch") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        branches = {m.num_branches for m in model.modules() if isinstance(m, (BruteForceSepBN2d, RoutedAffine2d))}
        if branches and (domain is None or not 0 <= domain < min(branches)):
            raise ValueError(
                f"this network has brute-force SepBN layers ({max(branches)} domain branches): choose the "
                f"branch with domain= (--domain) in 0..{min(branches) - 1}, got {domain!r}"
            )
        self.domain = domain if branches else None
        self.protocol = get_protocol(protocol) if not isinstance(protocol, Protocol) else protocol
        self.device = torch.device(device)
        # nothing to fold (no norm layer): keep the caller's module rather than a copy of it
        self.fused = bool(fuse) and (bool(sepbn_modules(model)) or any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()))
        self.model = (fuse_for_inference(model) if self.fused else model).to(self.device).eval()
        self.runtime = self._runtime(backend, crop.input_size)
        self.backend = "onnxruntime" if self.runtime is not None else "torch"
        # the layout of a fused copy run by PyTorch only: an unfused model is the caller's own module
        self.memory_format = (torch.channels_last if channels_last and self.fused and self.runtime is None
                              else torch.contiguous_format)
        if self.memory_format == torch.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.crop = crop
        self.detector = detector
        self.calibration = calibration
        self.batch_size = int(batch_size)
        self.flip = bool(flip)

    def _runtime(self, backend: str, input_size: int) -> OrtModel | None:
        if resolve_backend(backend, self.device) != "onnxruntime":
            return None
        module = SingleProtocolModule(self.model, self.protocol.name, self.domain)
        try:
            return OrtModel(module, input_size)
        except Exception as e:  # "auto" falls back, and says so; an explicit request fails
            if backend != "auto":
                raise
            warnings.warn(f"ONNX Runtime cannot run this network ({type(e).__name__}: {e}); using PyTorch",
                          RuntimeWarning, stacklevel=3)
            return None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, protocol: str | None = None, device: str | torch.device = "cpu",
                        **kwargs) -> "LandmarkDetector":
        """Load a training checkpoint (``.pt``) or a safetensors + ``config.json`` folder.

        ``protocol`` may be omitted when the checkpoint has one head; a protocol the checkpoint
        lacks raises :class:`CheckpointError` listing the ones it has.
        """
        model, meta = load_checkpoint(path)
        available = list(getattr(model, "output_protocols", None) or (meta.get("protocols") or {}).keys())
        name = _choose_protocol(path, available, protocol)
        model_args = meta.get("model_args") or getattr(model, "model_args", None) or {}
        config = meta.get("config") or {}
        size = model_args.get("input_size") or (config.get("model") or {}).get("input_size") or 128
        crop = crop_spec_from_config(config, name, int(size))
        # a weights folder may state how it is meant to run (bundled models do): box convention, flip
        stated = meta.get("inference") or {}
        if "box_convention" in stated:
            crop = CropSpec(crop.input_size, crop.box_scale, str(stated["box_convention"]))
        kwargs.setdefault("flip", bool(stated.get("flip", False)))
        return cls(model, checkpoint_protocols(meta)[name], crop, device=device, **kwargs)

    @property
    def point_names(self) -> tuple[str, ...]:
        return tuple(self.protocol.point_names)

    def detector_calibration(self) -> BoxCalibration:
        """The detector -> training box conversion in use."""
        if self.calibration is not None:
            return self.calibration
        name = getattr(self.detector, "name", "")
        return DETECTOR_CALIBRATION.get((name, self.crop.box_convention), BoxCalibration())

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes in the training convention and their scores, from the detector."""
        if self.detector is None:
            raise ValueError("no face boxes given and no face detector set (detector=...)")
        found = self.detector(image)
        return self.detector_calibration().apply(found.boxes), np.asarray(found.scores, dtype=np.float64)

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs (N, 3, S, S) float32 and crop->original matrices (N, 2, 3)."""
        S = self.crop.input_size
        mats = [crop_matrix(b, S, self.crop.box_scale) for b in boxes]
        inputs = np.stack([normalize_image(warp_image(image, m, S)) for m in mats]) if mats else \
            np.zeros((0, 3, S, S), np.float32)
        inverse = np.stack([invert_affine(m) for m in mats]) if mats else np.zeros((0, 2, 3))
        return inputs, inverse

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.runtime is not None:  # the exported graph holds the domain branch and the protocol's head
            return self.runtime(x)
        x = x.contiguous(memory_format=self.memory_format)
        return self.model(x, self.protocol.name)[self.protocol.name].float()

    @torch.inference_mode()
    def forward_crops(self, inputs: np.ndarray) -> np.ndarray:
        """Normalised predictions (N, L, 2) for network inputs (N, 3, S, S), ``batch_size`` at a time."""
        out = [np.zeros((0, self.protocol.num_points, 2), np.float32)]
        routed = domains(self.domain) if self.domain is not None else contextlib.nullcontext()
        with routed:
            for start in range(0, len(inputs), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + self.batch_size])).to(self.device)
                u = flip_average(self._forward, x, self.protocol.flip_perm) if self.flip else self._forward(x)
                out.append(u.cpu().numpy())
        return np.concatenate(out)

    def predict(self, image: np.ndarray | str | os.PathLike, boxes: Iterable | None = None,
                scores: Iterable | None = None) -> list[FaceLandmarks]:
        """Landmarks of every face in ``image`` (RGB uint8 array or a file path).

        ``boxes`` (N, 4) xyxy in the training box convention; None: run the detector. An image
        without faces gives an empty list.
        """
        return self.predict_many([image], None if boxes is None else [boxes],
                                 None if scores is None else [scores])[0]

    def predict_many(self, images: Sequence, boxes: Sequence | None = None,
                     scores: Sequence | None = None) -> list[list[FaceLandmarks]]:
        """:meth:`predict` over several images with the faces of all of them batched together."""
        images = [_rgb(im) for im in images]
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"got {len(boxes)} box lists for {len(images)} images")
        all_boxes, all_scores, owner, inputs, inverses = [], [], [], [], []
        for i, img in enumerate(images):
            if boxes is None:
                b, s = self.detect(img)
            else:
                b = np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4)
                s = np.ones(len(b)) if scores is None else np.asarray(scores[i], dtype=np.float64).reshape(-1)
                if len(s) != len(b):
                    raise ValueError(f"image {i}: {len(s)} scores for {len(b)} boxes")
            x, inv = self.crops(img, b)
            all_boxes.append(b)
            all_scores.append(s)
            owner += [i] * len(b)
            inputs.append(x)
            inverses.append(inv)
        S = self.crop.input_size
        u = self.forward_crops(np.concatenate(inputs))
        points = to_original(u, np.concatenate(inverses), S)
        results: list[list[FaceLandmarks]] = [[] for _ in images]
        flat_boxes = np.concatenate(all_boxes)
        flat_scores = np.concatenate(all_scores)
        for k, i in enumerate(owner):
            results[i].append(FaceLandmarks(points[k], flat_boxes[k], float(flat_scores[k]),
                                            self.protocol.name, self.point_names))
        return results

    def __repr__(self) -> str:
        det = getattr(self.detector, "name", None)
        return (f"LandmarkDetector(protocol={self.protocol.name!r}, crop={self.crop}, device={self.device}, "
                f"detector={det!r}, batch_size={self.batch_size}"
                + ("" if self.domain is None else f", domain={self.domain}")
                + ("" if self.fused else ", unfused")
                + (", channels-last" if self.memory_format == torch.channels_last else "")
                + (", onnxruntime" if self.runtime is not None else "")
                + (", flip" if self.flip else "") + ")")
