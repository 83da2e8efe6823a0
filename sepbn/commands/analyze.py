"""``sepbn analyze --checkpoint CKPT --data FMT:SOURCE [--data ...] [--out DIR]``: what SepBN learned.

Writes into ``--out`` (default: ``analysis/`` beside the checkpoint) ``analysis.json`` and PNG plots:
the entropy of the attention pi per SepBN layer (``entropy.png``), the mean pi per sub-domain
(``pi_<grouping>.png``: pose domain, dataset when several ``--data`` are given, WFLW attributes), the
similarity of the K mapping sets (``similarity.png``, paper Fig. 4) and a t-SNE of the pooled backbone
features (``tsne.png`` and ``tsne.csv``, paper Fig. 3; needs scikit-learn, extra ``analyze``). The JSON
also holds the weight decay applied to the mapping sets and the tau each layer holds. Pose domains are
the records' own (SynthFaces) or else ``sepbn.data.pose_domains`` from the landmarks (``--pose-domains``).
See docs/analyze.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..assembly import build_datasets, checkpoint_entries, resolve_device
from ..checkpoint import checkpoint_protocols, load_checkpoint, load_model
from ..config import DataConfig
from ..data.multi import collate_landmarks
from ..data.pose_domains import assign_pose_domains
from ..evaluation import analysis as A, analysis_plots as P
from ..evaluation.analysis import capture, tsne
from ..evaluation.analysis_plots import plot_tsne
from ..io import atomic_write_text
from ..protocols import WFLW_ATTRIBUTES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) or weights folder")
    parser.add_argument("--data", action="append", default=[], metavar="FMT:SOURCE",
                        help="annotations to analyse (repeatable; several = grouped by dataset too)")
    parser.add_argument("--out", default=None, help="output folder (default: analysis/ beside the checkpoint)")
    parser.add_argument("--protocol", action="append", default=[],
                        help="protocol of the data: once for all --data or once per --data "
                             "(default: the checkpoint's head when it has one)")
    parser.add_argument("--split", default=None, help="split of the format (e.g. SynthFaces test)")
    parser.add_argument("--images", default=None, help="image root of the annotation files")
    parser.add_argument("--box-scale", type=float, default=None, help="crop enlargement (default: training's)")
    parser.add_argument("--pose-domains", default="yaw", choices=["yaw", "kmeans"],
                        help="pose domains from landmarks for faces without domain labels")
    parser.add_argument("--max-faces", type=int, default=2000, help="faces analysed, all --data together")
    parser.add_argument("--no-tsne", action="store_true", help="skip the t-SNE")
    parser.add_argument("--seed", type=int, default=0, help="face subset and t-SNE seed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")


def _entries(args, meta) -> list:
    return checkpoint_entries(args.data, args.protocol, checkpoint_protocols(meta), meta.get("config"),
                              split=args.split, images=args.images, box_scale=args.box_scale)


def _subsets(sizes: list[int], max_faces: int, seed: int) -> list[np.ndarray]:
    """Sorted face indices per dataset: all when they fit, else a seeded share proportional to size."""
    total = sum(sizes)
    rng = np.random.default_rng(seed)
    if total <= max_faces:
        return [np.arange(n) for n in sizes]
    return [np.sort(rng.choice(n, max(1, int(max_faces * n / total)), replace=False)) for n in sizes]


def _labels(records: list, protocol, method: str) -> dict[str, list[str]]:
    """Per-face sub-domain labels: pose domain, and each WFLW attribute the records carry."""

    if not all("domain" in r.attributes for r in records):
        records = assign_pose_domains(records, protocol, method=method)
    out = {"pose": [str(r.attributes["domain"]) for r in records]}
    for attr in WFLW_ATTRIBUTES:
        if all(attr in r.attributes for r in records):
            out[f"wflw-{attr}"] = [attr if int(r.attributes[attr]) else f"no {attr}" for r in records]
    return out


def _collect(model, datasets: dict, subsets: list, args, device):
    heads = set(model.output_protocols)
    groupings: dict[str, list[str]] = {"dataset": []}

    def batches():
        for (name, ds), idx in zip(datasets.items(), subsets):
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx.tolist()), batch_size=args.batch_size,
                                                 shuffle=False, collate_fn=collate_landmarks)
            protocol = ds.protocol.name
            for batch in loader:
                yield batch["image"], protocol if protocol in heads else None

    for (name, ds), idx in zip(datasets.items(), subsets):
        groupings["dataset"] += [name] * len(idx)
        for key, values in _labels([ds.records[i] for i in idx], ds.protocol, args.pose_domains).items():
            groupings.setdefault(key, []).extend(values)
    n = len(groupings["dataset"])
    groupings = {k: np.asarray(v) for k, v in groupings.items() if len(v) == n}  # attributes all datasets share
    if len(datasets) == 1:
        groupings.pop("dataset")
    return capture(model, batches(), device), groupings


def _optimizer_state(path: Path):
    return load_checkpoint(path).get("optimizer") if path.is_file() else None


def _report(layers: dict, similarity: dict, setup: dict) -> str:
    lines = [f"{'layer':<28}{'H/logK':>8}{'cos w':>8}{'cos b':>8}{'spread w':>10}{'tau':>7}"]
    for name in similarity:
        s, h = similarity[name], layers.get(name, {}).get("entropy_normalised", float("nan"))
        lines.append(f"{name:<28}{h:>8.3f}{s['weight']['cosine']:>8.3f}{s['bias']['cosine']:>8.3f}"
                     f"{s['weight']['relative_spread']:>10.4f}{setup['tau'].get(name, float('nan')):>7.2f}")
    lines.append(f"weight decay on the mapping sets: {setup['sepbn_weight_decay']} ({setup['sepbn_weight_decay_from']}; "
                 f"{setup['optimizer']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    model, meta = load_model(args.checkpoint)  # an unusable checkpoint exits 2, as from eval, predict, export
    try:
        entries = _entries(args, meta)
        has_sepbn = bool(A.mapping_similarity(model))
        if not has_sepbn:
            if args.no_tsne:
                raise ValueError(f"{args.checkpoint}: no SepBN layers (plain normalisation) and --no-tsne: nothing to analyse")
            print(f"sepbn analyze: {args.checkpoint} has no SepBN layers; writing only the t-SNE of backbone features",
                  file=sys.stderr)
        if args.max_faces < 4:
            raise ValueError(f"--max-faces must be at least 4, got {args.max_faces}")
        device = resolve_device(args.device)
        model.to(device)
        size = int(meta["model_args"].get("input_size", 128))
        datasets = build_datasets(DataConfig(), entries, train=False, image_size=size)
        subsets = _subsets([len(ds) for ds in datasets.values()], args.max_faces, args.seed)
        captured, groupings = _collect(model, datasets, subsets, args, device)
        out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "analysis"
        result = {"checkpoint": str(args.checkpoint), "data": args.data, "faces": int(len(captured.features)),
                  "datasets": {name: int(len(i)) for name, i in zip(datasets, subsets)},
                  "training_setup": A.training_setup(meta.get("config"), _optimizer_state(Path(args.checkpoint)), model),
                  "layers": {name: A.attention_summary(pi, groupings) for name, pi in captured.pi.items()},
                  "similarity": A.mapping_similarity(model), "plots": {}}
        if result["layers"]:
            result["plots"]["entropy"] = str(P.plot_entropy(result["layers"], out / "entropy.png"))
            for g in groupings:
                result["plots"][f"pi_{g}"] = str(P.plot_pi(result["layers"], g, out / f"pi_{g}.png"))
        if result["similarity"]:
            result["plots"]["similarity"] = str(P.plot_similarity(result["similarity"], out / "similarity.png"))
        if not args.no_tsne:
            result["tsne"] = _tsne(captured.features, groupings, out, args.seed)
            result["plots"]["tsne"] = result["tsne"]["plot"]
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as e:
        print(f"sepbn analyze: {e}", file=sys.stderr)
        return 1
    atomic_write_text(out / "analysis.json", json.dumps(_finite(result), indent=2))
    if has_sepbn:
        print(_report(result["layers"], result["similarity"], result["training_setup"]))
    print(f"analysis of {result['faces']} faces written to {out}")
    return 0


def _finite(value):
    """NaN (an undefined entropy or cosine) as JSON null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def _tsne(features: np.ndarray, groupings: dict, out: Path, seed: int) -> dict:
    coords = tsne(features, seed=seed)
    colour = "dataset" if "dataset" in groupings else "pose"
    plot = plot_tsne(coords, groupings[colour], out / "tsne.png",
                     title=f"t-SNE of pooled backbone features ({len(coords)} faces) by {colour}")
    keys = list(groupings)
    rows = ["x,y," + ",".join(keys)] + [f"{x:.4f},{y:.4f}," + ",".join(str(groupings[k][i]) for k in keys)
                                        for i, (x, y) in enumerate(coords)]
    atomic_write_text(out / "tsne.csv", "\n".join(rows) + "\n")
    return {"faces": int(len(coords)), "colour_by": colour, "plot": str(plot), "points": str(out / "tsne.csv")}
