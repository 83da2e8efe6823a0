"""evaluate(): a model on a dataset -> per-face errors in ORIGINAL image coordinates -> the paper's numbers.

Paper section V-A, eq. (8): NME = 1/L sum_j ||p_j - g_j|| / d per face, with the protocol's
normaliser ``d``. Predictions are normalised crop coordinates; each is decoded to crop pixels
(``decode_points``) and mapped back through the sample's inverse crop matrix, so errors are
measured in the pixels of the annotated image (where the normalisers are defined), never in
the 128 px crop.

The summary holds the mean NME, failure rates and AUC at 8% and 10% (fractions), the
normaliser's name, the WFLW subsets (Table IX) when the records carry WFLW's attribute flags,
per-sub-domain NME when they carry domain labels (SynthFaces), and the CED plot path if asked.

Brute-force SepBN networks (paper III-A) need a branch per face: ``branch=k`` runs every face
through branch k, ``"label"`` routes each face by its record's domain label, and ``"best"`` (the
default for such networks, as the paper tests them) runs every branch and keeps each face's lowest
NME, an oracle that needs the ground truth; the summary then counts the branches chosen.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.multi import collate_landmarks
from ..data.transforms import to_original
from ..models.tta import flip_average
from ..nn.bruteforce import BruteForceSepBN2d, best_per_sample, domains
from ..protocols import WFLW_ATTRIBUTES, Protocol, require_protocol
from .metrics import auc, failure_rate, nme, normalizer_label, plot_ced, wflw_subset_table

__all__ = ["EvalResult", "predict", "evaluate", "summarize", "num_domain_branches"]

THRESHOLDS = (0.08, 0.10)

Branch = int | str | None


@dataclass
class EvalResult:
    """Per-face results of one dataset and their summary.

    ``predictions`` / ``landmarks``: (N, L, 2) original pixels; ``errors``: (N,) NME fractions;
    ``indices``: positions in the dataset's records; ``domains``: (N,) ids (-1 unknown);
    ``branches``: (N,) brute-force branch used per face (-1 for networks without one).
    """

    name: str
    protocol: Protocol
    predictions: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    errors: np.ndarray
    indices: np.ndarray
    domains: np.ndarray
    branches: np.ndarray
    summary: dict = field(default_factory=dict)


def _batches(data: Any, batch_size: int, workers: int):
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       collate_fn=collate_landmarks)


def num_domain_branches(model: torch.nn.Module) -> int:
    """K of the network's brute-force SepBN layers (0 when it has none)."""
    ks = {m.num_domains for m in model.modules() if isinstance(m, BruteForceSepBN2d)}
    if len(ks) > 1:
        raise ValueError(f"brute-force SepBN layers disagree on the number of branches: {sorted(ks)}")
    return ks.pop() if ks else 0


def _check_branch(branch: Branch, k: int) -> Branch:
    if k == 0:
        if branch is not None:
            raise ValueError(f"branch={branch!r} applies to brute-force SepBN networks only; this one has none")
        return None
    if branch is None:
        return "best"
    if isinstance(branch, str) and branch.lstrip("-").isdigit():
        branch = int(branch)
    if branch in ("best", "label") or (isinstance(branch, int) and 0 <= branch < k):
        return branch
    raise ValueError(f"branch must be 'best', 'label' or an int in 0..{k - 1}, got {branch!r}")


@torch.no_grad()
def predict(model: torch.nn.Module, data: Any, protocol: Protocol, *, batch_size: int = 32,
            device: str | torch.device = "cpu", workers: int = 0, branch: Branch = None,
            normalizer: str | None = None, flip: bool = False) -> dict[str, np.ndarray]:
    """Run ``model``'s ``protocol`` head over ``data`` (a LandmarkDataset or a DataLoader of
    ``collate_landmarks`` batches); arrays in original pixels, in dataset order.

    ``branch`` (brute-force SepBN networks only, default ``"best"``): an int, ``"label"`` or
    ``"best"`` (per face the branch of lowest NME under ``normalizer``), see the module doc.
    ``flip``: average each face's prediction with the one on its mirror image (`flip_average`)."""
    device = torch.device(device)
    spec = require_protocol(protocol)
    protocol = spec.name  # the head's and the batches' key
    heads = getattr(model, "output_protocols", None)
    if heads is not None and protocol not in heads:
        raise ValueError(f"the model predicts {list(heads)}, not protocol {protocol!r}")
    k = num_domain_branches(model)
    branch = _check_branch(branch, k)
    if flip and branch == "label":  # a mirrored face belongs to the mirror domain: routing would be wrong
        raise ValueError("flip averaging cannot route faces by their domain label (branch='label')")
    flip_perm = spec.flip_perm if flip else None
    was_training = model.training
    model.eval()
    keys = ("predictions", "landmarks", "boxes", "indices", "domains", "branches")
    parts: dict[str, list] = {key: [] for key in keys}
    try:
        for batch in _batches(data, batch_size, workers):
            if set(batch["protocol"]) != {protocol}:
                raise ValueError(f"batch holds protocols {sorted(set(batch['protocol']))}, expected {protocol!r}")
            images = batch["image"].to(device)
            size = images.shape[-1]
            inverse = batch["inverse"].numpy()
            landmarks = batch["landmarks"][protocol].numpy().astype(np.float64)
            boxes = batch["box"].numpy().astype(np.float64)

            def run(route: Any) -> np.ndarray:
                def forward(x: torch.Tensor) -> torch.Tensor:
                    return model(x, protocols=protocol)[protocol].float()

                with domains(route) if route is not None else contextlib.nullcontext():
                    u = forward(images) if flip_perm is None else flip_average(forward, images, flip_perm)
                return to_original(u.cpu().numpy(), inverse, size)

            if branch is None or isinstance(branch, int):
                points = run(branch)
                chosen = np.full(len(images), -1 if branch is None else branch)
            elif branch == "label":
                labels = batch["domain"]
                if bool((labels < 0).any()) or bool((labels >= k).any()):
                    raise ValueError(f"branch='label' needs every face's domain label in 0..{k - 1}; "
                                     f"this batch has {sorted(set(labels.tolist()))}")
                points, chosen = run(labels), labels.numpy()
            else:  # "best": the paper's test of brute-force SepBN, one pass per branch
                outputs = [torch.from_numpy(run(j)) for j in range(k)]
                best, choice = best_per_sample(outputs, lambda out: torch.from_numpy(
                    nme(out.numpy(), landmarks, spec, boxes=boxes, normalizer=normalizer)))
                points, chosen = best.numpy(), choice.numpy()
            parts["predictions"].append(points)
            parts["landmarks"].append(landmarks)
            parts["boxes"].append(boxes)
            parts["indices"].append(batch["index"].numpy())
            parts["domains"].append(batch["domain"].numpy())
            parts["branches"].append(np.asarray(chosen, dtype=np.int64))
    finally:
        model.train(was_training)
    if not parts["predictions"]:
        raise ValueError("evaluate got an empty dataset")
    return {key: np.concatenate(v) for key, v in parts.items()}


def _rates(e: np.ndarray, thresholds: Sequence[float]) -> dict[str, float]:
    out = {"faces": int(len(e)), "nme": float(e.mean())}
    for t in thresholds:
        tag = f"{100 * t:g}"
        out[f"fr@{tag}"] = failure_rate(e, t)
        out[f"auc@{tag}"] = auc(e, t)
    return out


def summarize(errors: np.ndarray, protocol: Protocol, *, normalizer: str | None = None,
              attributes: Sequence[dict] | None = None, domains: np.ndarray | None = None,
              domain_names: dict[int, str] | None = None, thresholds: Sequence[float] = THRESHOLDS,
              name: str = "") -> dict:
    """The summary dict of one dataset's per-face errors (fractions)."""
    p = require_protocol(protocol)
    out: dict[str, Any] = {"dataset": name, "protocol": p.name,
                           "normalizer": normalizer_label(p, normalizer), **_rates(errors, thresholds)}
    if attributes is not None and all(all(k in a for k in WFLW_ATTRIBUTES) for a in attributes):
        rows = wflw_subset_table(errors, list(attributes), threshold=max(thresholds))
        out["subsets"] = {r.subset: {"faces": r.count, "nme": r.nme, "fr": r.failure_rate, "auc": r.auc}
                          for r in rows}
    if domains is not None and np.any(np.asarray(domains) >= 0):
        names = domain_names or {}
        out["domains"] = {}
        for d in sorted(set(int(x) for x in domains)):
            label = names.get(d, "unknown" if d < 0 else f"domain {d}")
            out["domains"][label] = _rates(errors[np.asarray(domains) == d], thresholds)
    return out


def evaluate(model: torch.nn.Module, data: Any, protocol: Protocol | None = None, *, normalizer: str | None = None,
             batch_size: int = 32, device: str | torch.device = "cpu", workers: int = 0,
             thresholds: Sequence[float] = THRESHOLDS, ced_path: str | Path | None = None,
             name: str = "", branch: Branch = None, flip: bool = False) -> EvalResult:
    """Evaluate ``model`` on a ``LandmarkDataset`` (or a DataLoader over one).

    ``protocol`` (a :class:`Protocol`) defaults to the dataset's; ``normalizer`` names one of the protocol's
    normalisers (default: the paper's). The records' ``attributes`` supply the WFLW flags and
    the SynthFaces domain names. ``branch``: see `predict` (brute-force SepBN networks); ``flip``:
    flip averaging (`predict`), recorded in the summary.
    """
    dataset = data.dataset if isinstance(data, torch.utils.data.DataLoader) else data
    ds_protocol = getattr(dataset, "protocol", None)
    protocol = require_protocol(protocol or ds_protocol)
    if ds_protocol is not None and ds_protocol != protocol:
        raise ValueError(f"dataset is annotated in {ds_protocol.name!r}, evaluation asked for {protocol.name!r}")
    out = predict(model, data, protocol, batch_size=batch_size, device=device, workers=workers,
                  branch=branch, normalizer=normalizer, flip=flip)
    errors = nme(out["predictions"], out["landmarks"], protocol, boxes=out["boxes"], normalizer=normalizer)
    records = getattr(dataset, "records", None)
    attributes = domain_names = None
    if records is not None:
        attributes = [records[i].attributes for i in out["indices"]]
        domain_names = {int(a["domain_id"]): str(a.get("domain", a["domain_id"]))
                        for a in attributes if "domain_id" in a}
    summary = summarize(errors, protocol, normalizer=normalizer, attributes=attributes, domains=out["domains"],
                        domain_names=domain_names, thresholds=thresholds, name=name)
    summary["flip"] = bool(flip)
    if np.any(out["branches"] >= 0):
        k = num_domain_branches(model)
        summary["branch"] = _check_branch(branch, k)
        summary["branch_counts"] = np.bincount(out["branches"], minlength=k).tolist()
    if ced_path is not None:
        summary["ced"] = str(plot_ced({name or protocol.name: errors}, max(thresholds), ced_path,
                                      xlabel=summary["normalizer"]))
    return EvalResult(name=name, protocol=protocol, errors=errors, summary=summary, **out)
