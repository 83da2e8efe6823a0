"""``sepbn export --checkpoint CKPT --format onnx|torchscript --out FILE [--protocol NAME]``.

Exports one protocol's branch (image (N, 3, S, S) -> landmarks (N, L, 2), normalised crop
coordinates, dynamic batch) with SepBN's input-dependent attention in the graph, then runs the
parity check (exported file vs eager PyTorch, batches 1 and 3) and prints it. A JSON file next to
the export (``FILE.json``) records what a deployment needs to reproduce the preprocessing: input
size, box scale and convention, input normalisation, point names. Exit status 0 when the parity
check passes, 1 when it fails (the file is still written), 2 when the checkpoint cannot be used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..inference.export import export_model
from ..inference.predictor import LandmarkDetector
from ..io import atomic_write_text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) or safetensors folder")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"), dest="fmt")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    parser.add_argument("--protocol", help="which head to export (needed when the checkpoint has several)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="parity tolerance (normalised coords)")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument("--domain", type=int, help="branch of brute-force SepBN layers (such checkpoints need it)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="export the model as trained (default: BN/SepBN folded into the convolutions)")


def deployment_info(detector, fmt: str) -> dict:
    """What a consumer of the exported file needs besides the graph."""

    crop = detector.crop
    return {
        "format": fmt,
        "input": {"name": "image", "shape": ["N", 3, crop.input_size, crop.input_size], "dtype": "float32",
                  "channels": "RGB", "normalisation": "(x / 255 - mean) / std",
                  "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "output": {"name": "landmarks", "shape": ["N", detector.protocol.num_points, 2],
                   "coordinates": "u = (x + 0.5) / S * 2 - 1 in the crop (x = (u + 1) * S / 2 - 0.5)"},
        "crop": {"input_size": crop.input_size, "box_scale": crop.box_scale, "box_convention": crop.box_convention,
                 "rule": "square box of side max(w, h) * box_scale around the face box centre, "
                         "its outer edges on the crop's outer pixel edges"},
        "protocol": detector.protocol.name,
        "domain": detector.domain,
        "point_names": list(detector.point_names),
    }


def run(args: argparse.Namespace) -> int:
    detector = LandmarkDetector.from_checkpoint(args.checkpoint, args.protocol, domain=args.domain, fuse=False)
    out = Path(args.out)
    print(f"exporting {detector.protocol.name} ({detector.protocol.num_points} points, "
          f"{detector.crop.input_size}x{detector.crop.input_size} input) from {args.checkpoint} to {out} ({args.fmt})")
    report = export_model(detector.model, detector.protocol.name, args.fmt, out, detector.crop.input_size,
                          check=not args.no_check, tolerance=args.tolerance, domain=detector.domain,
                          fuse=not args.no_fuse)
    info = out.with_name(out.name + ".json")
    atomic_write_text(info, json.dumps(deployment_info(detector, args.fmt), indent=2) + "\n")
    print(f"wrote {out} and {info}")
    if report is None:
        print("parity check skipped (--no-check)")
        return 0
    print(report)
    return 0 if report.ok else 1
