"""Bundled landmark models: ``load_pretrained("300w68")`` and ``sepbn predict`` without a checkpoint.

The weights ship inside the package (``sepbn/inference/weights/<name>/``) as a safetensors file and
its ``config.json``, the format ``sepbn train`` writes to ``final/``; loading them unpickles nothing.
``config.json`` also says how the model is meant to run (``inference``: the box convention its
training faces were cropped from, flip averaging), so the bundled face detector's boxes are
converted to that convention. Training data, licence, accuracy and speed: docs/model_card.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..checkpoint import save_weights
from .detector import BOX_CONVENTIONS, create_detector
from .predictor import CheckpointError, LandmarkDetector

__all__ = ["PRETRAINED", "pretrained_path", "load_pretrained", "bundle"]

# the bundled models, each a folder of that name under sepbn/inference/weights (docs/model_card.md)
PRETRAINED: tuple[str, ...] = ("300w68", "5pt")
DEFAULT_MODEL = "300w68"
WEIGHTS = Path(__file__).resolve().parent / "weights"
LICENCE_300W = ("trained on 300-W (iBUG) faces: research use only, not for commercial use; "
                "see docs/model_card.md")
LICENCE_MTFL = ("trained on MTFL (CUHK Multi-Task Facial Landmark) faces: research use only, not for "
                "commercial use; see docs/model_card.md")
# the terms each bundled model's training data imposes, by model name
LICENCES = {"300w68": LICENCE_300W, "5pt": LICENCE_MTFL}


def pretrained_path(name: str = DEFAULT_MODEL) -> Path:
    """The folder of bundled model ``name``; a one-line error when it is unknown or not installed."""
    if name not in PRETRAINED:
        raise CheckpointError(f"no bundled model {name!r}; bundled: {sorted(PRETRAINED)}")
    folder = WEIGHTS / name
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"bundled model {name!r} is missing from this installation ({folder}); "
                              "reinstall sepbn or pass a checkpoint")
    return folder


def load_pretrained(name: str = DEFAULT_MODEL, *, device: str | torch.device = "cpu",
                    detector: str | None = "haar", backend: str = "auto", **kwargs) -> LandmarkDetector:
    """A :class:`LandmarkDetector` for bundled model ``name`` with a face detector for whole photos.

    ``detector``: ``"haar"`` (OpenCV's bundled cascade, default), ``"full"`` (each image is one
    pre-cropped face) or ``None`` (boxes must be passed to ``predict``). ``backend``: ``"auto"`` (ONNX
    Runtime on CPU when installed, the network exported once and cached; else PyTorch), ``"onnxruntime"`` or
    ``"torch"``. Other keyword arguments go to :class:`LandmarkDetector` (``batch_size``, ``flip``, ``fuse``,
    ``calibration``).

    Examples:
        >>> import sepbn
        >>> det = sepbn.load_pretrained("300w68")  # doctest: +SKIP
        >>> faces = det.predict("photo.jpg")  # doctest: +SKIP
        >>> faces[0].landmarks.shape  # doctest: +SKIP
        (68, 2)
    """
    face_detector = create_detector(detector) if detector else None
    return LandmarkDetector.from_checkpoint(pretrained_path(name), device=device, detector=face_detector,
                                            backend=backend, **kwargs)


def bundle(weights: str | Path, name: str, *, box_convention: str, flip: bool, dest: str | Path | None = None,
           licence: str | None = None) -> Path:
    """Copy a trained weights folder (``final/``) to ``dest`` (default: the package's bundled folder
    ``name``), stating in its config.json how the model runs and the licence its training data imposes
    (``licence``; default: the stated terms of model ``name``'s data, required for any other name)."""
    weights = Path(weights)
    licence = licence or LICENCES.get(name)
    if licence is None:
        raise ValueError(f"licence is required for a model other than {sorted(LICENCES)}: "
                         f"say what {name!r}'s training data allows")
    if box_convention not in set(BOX_CONVENTIONS.values()):
        known = sorted(set(BOX_CONVENTIONS.values()))
        raise ValueError(f"box_convention must be one of {known}, got {box_convention!r}")
    meta = json.loads((weights / "config.json").read_text())
    meta["inference"] = {"box_convention": box_convention, "flip": bool(flip)}
    meta["licence"] = licence
    meta["source"] = str(weights)
    return save_weights(Path(dest) if dest else WEIGHTS / name, load_file(weights / "model.safetensors"), meta)


def main(argv: list[str] | None = None) -> None:
    """``python -m sepbn.inference.pretrained WEIGHTS --name 300w68 --flip``: make a bundled model."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("weights", help="a trained weights folder (OUT/final)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--box-convention", default="landmarks", help="the training faces' box (default: landmarks)")
    ap.add_argument("--flip", action="store_true", help="the model runs with flip averaging by default")
    ap.add_argument("--dest", default=None, help="default: the package's weights folder")
    ap.add_argument("--licence", default=None,
                    help="the terms its training data imposes (default: the stated terms of --name's data)")
    args = ap.parse_args(argv)
    try:
        print(bundle(args.weights, args.name, box_convention=args.box_convention, flip=args.flip,
                     dest=args.dest, licence=args.licence))
    except ValueError as e:
        ap.error(str(e))


if __name__ == "__main__":
    main()
