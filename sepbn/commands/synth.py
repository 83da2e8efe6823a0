"""``sepbn synth --out DIR [--protocol P ...] [--num N] [--seed S] [--preview]``: SynthFaces on disk.

Renders N synthetic faces into DIR with train/test annotations in each protocol's official
format (layout: docs/synth.md), a ``domains.csv`` and a ``synth.json``. ``--preview`` also saves
``DIR/preview.png``, a contact sheet with the landmarks drawn (``--num 0``: only the sheet).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from ..data.protocols import get_protocol
from ..data.synth import DEFAULT_DOMAINS, FORMATS, contact_sheet, generate, parse_domains
from ..errors import UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--protocol", action="append", metavar="P",
                        help="protocol to label (repeat or comma-separate; default: wflw98, 300w68, cofw29, "
                        "aflw19, 5pt)")
    parser.add_argument("--num", type=int, default=1000, help="number of faces, train + test (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="faces depend only on (seed, index) (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of faces in the test split")
    parser.add_argument("--domains", help="mixture, e.g. 'left-profile:0.15,frontal:0.7,right-profile:0.15' or "
                        "'name:weight:yaw_min:yaw_max,...' (default: 15/70/15 profiles/frontal)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (same output for any value)")
    parser.add_argument("--preview", action="store_true", help="also save DIR/preview.png (a contact sheet)")
    parser.add_argument("--preview-faces", type=int, default=24, help="faces on the contact sheet (default 24)")


def _protocols(values: list[str] | None) -> list[str]:
    if not values:
        return list(FORMATS)
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _save_small_png(rgb, path: Path) -> None:
    """A 256-colour dithered palette PNG (about 260 KB for the default sheet instead of 1 MB):
    noisy photos compress badly, and the sheet is meant for READMEs."""

    img = Image.fromarray(rgb)
    palette = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    img.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def run(args: argparse.Namespace) -> int:
    if args.num < 0:
        raise UsageError(f"--num must be >= 0, got {args.num}")
    if args.size < 32:
        raise UsageError(f"--size must be >= 32, got {args.size}")
    try:  # a bad --protocol or --domains is a usage error (exit 2), as argparse's own
        protocols = [get_protocol(p).name for p in _protocols(args.protocol)]
        domains = parse_domains(args.domains) if args.domains else DEFAULT_DOMAINS
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out)
    if args.num > 0:
        summary = generate(out, protocols, args.num, seed=args.seed, domains=domains, size=args.size,
                           test_fraction=args.test_fraction, workers=args.workers)
        print(f"SynthFaces: {summary['num_train']} train + {summary['num_test']} test faces in {out} "
              f"({', '.join(protocols)})")
        for split in ("train", "test"):
            counts = ", ".join(f"{k} {v}" for k, v in summary["counts"][split].items())
            print(f"  {split}: {counts}")
    if args.preview:
        sheet = contact_sheet(args.preview_faces, protocol=protocols[0], seed=args.seed, domains=domains,
                              size=args.size)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "preview.png"
        _save_small_png(sheet, path)
        print(f"contact sheet ({protocols[0]} points; green visible, red hidden): {path}")
    return 0
