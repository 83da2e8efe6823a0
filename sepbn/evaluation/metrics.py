"""Landmark metrics: NME (paper eq. 8), failure rate, AUC, CED and the WFLW subset table.

    NME = 1/L * sum_j ||p_j - g_j||_2 / d                                  (eq. 8, a fraction)

computed per face in ORIGINAL image coordinates, with ``d`` the protocol's normaliser (section
V-A: inter-ocular for WFLW and COFW, the face box for AFLW; see :mod:`sepbn.protocols`).
Every function returns fractions; tables multiply by 100. Always print the normaliser with a
number (:func:`normalizer_label`): inter-pupil NME on 300-W is about 1.39x the inter-ocular one.

CED(e) is the share of faces whose NME is <= e. ``failure_rate(errors, t)`` is the share above
``t``. ``auc(errors, t)`` = (1/t) * integral_0^t CED(e) de, computed exactly by the trapezoid rule
on the vertices of the CED step curve over the sorted errors (the limit of the fine-step
``simps`` integration used by the WFLW literature); it equals ``mean(max(0, 1 - e_i / t))``.

Pure numpy; imports only :mod:`sepbn.protocols` and :mod:`sepbn.io` (matplotlib inside :func:`plot_ced`),
never OpenCV or the readers. Functions take :class:`~sepbn.protocols.Protocol` objects, never names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import atomic_path
from ..protocols import WFLW_ATTRIBUTES, Normalizer, Protocol, require_protocol

__all__ = [
    "save_png",
    "nme",
    "normalizer_label",
    "failure_rate",
    "auc",
    "ced",
    "plot_ced",
    "SubsetRow",
    "wflw_subset_table",
    "format_subset_table",
    "group_mean",
]


def _normalizer(protocol: Protocol, normalizer: str | Normalizer | None) -> Normalizer:
    if isinstance(normalizer, Normalizer):
        return normalizer
    return protocol.normalizer(normalizer)


def normalizer_label(protocol: Protocol, normalizer: str | Normalizer | None = None) -> str:
    """Text naming the normaliser, e.g. ``"NME (wflw98, inter-ocular (60, 72))"``."""
    p = require_protocol(protocol)
    return f"NME ({p.name}, {_normalizer(p, normalizer).name})"


def nme(
    pred: np.ndarray,
    gt: np.ndarray,
    protocol: Protocol,
    boxes: np.ndarray | None = None,
    normalizer: str | Normalizer | None = None,
) -> np.ndarray:
    """Per-face NME (fractions), shape (N,), for ``pred`` and ``gt`` of shape (N, L, 2) or (L, 2).

    ``normalizer`` is a name of the protocol's normalisers (default: its paper choice) or a
    :class:`Normalizer`; box normalisers need ``boxes`` (N, 4) as (x_min, y_min, x_max, y_max).

    >>> gt = np.array([[0, 0], [10, 0], [5, 5], [2, 8], [8, 8]], float)  # eye centres 10 px apart
    >>> from sepbn.protocols import FIVE_POINT
    >>> nme(gt + [3, 4], gt, FIVE_POINT).tolist()  # 5 px off everywhere
    [0.5]
    >>> nme(gt + [3, 4], gt, FIVE_POINT, boxes=[[0, 0, 30, 40]], normalizer="box-diag").tolist()
    [0.1]
    """
    p = require_protocol(protocol)
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim == 2:
        pred, gt = pred[None], gt[None]
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[1:] != (p.num_points, 2):
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (N, {p.num_points}, 2) "
                         f"for protocol {p.name!r}")
    if boxes is not None and np.shape(boxes) not in ((len(gt), 4), (4,)):
        raise ValueError(f"boxes must be (N, 4) with N={len(gt)}, got {np.shape(boxes)}")
    d = _normalizer(p, normalizer).distance(gt, boxes)
    if np.any(~(d > 0)):
        bad = np.flatnonzero(~(d > 0))
        raise ValueError(f"normalising distance is not positive for faces {bad.tolist()[:10]}")
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / d


def failure_rate(errors: np.ndarray, threshold: float = 0.1) -> float:
    """Share of faces whose NME exceeds ``threshold`` (0.1 in the paper's WFLW/COFW tables)."""
    e = _errors(errors)
    return float(np.mean(e > threshold))


def auc(errors: np.ndarray, threshold: float = 0.1) -> float:
    """Area under the CED curve from 0 to ``threshold``, divided by ``threshold`` (in [0, 1]).

    >>> round(auc(np.array([0.02, 0.06]), 0.1), 6)  # (0.8 + 0.4) / 2
    0.6
    """
    e = np.sort(_errors(errors))
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    n = len(e)
    inside = e[e < threshold]
    k = len(inside)
    # Vertices of the CED step curve: it jumps from (i-1)/n to i/n at each error e_i.
    x = np.concatenate([[0.0], np.repeat(inside, 2), [threshold]])
    y = np.concatenate([[0.0], np.repeat(np.arange(k + 1) / n, 2)[1:-1], [k / n]])
    return float(np.trapezoid(y, x) / threshold)


def ced(errors: np.ndarray, threshold: float = 0.1, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """The CED curve sampled at ``steps`` errors in [0, threshold]: (x, share of faces <= x)."""
    e = np.sort(_errors(errors))
    x = np.linspace(0.0, threshold, steps)
    return x, np.searchsorted(e, x, side="right") / len(e)


def plot_ced(
    curves: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    threshold: float,
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "NME",
    ylabel: str = "share of faces",
) -> Path:
    """Write the CED curves to a PNG file (atomically); returns the path.

    ``curves``: name -> one run's per-face errors, or a list of runs' errors (seeds), drawn as the
    mean of their CED curves. The legend gives each curve's mean NME and AUC in percent (means over
    runs); pass the normaliser (:func:`normalizer_label`) as ``xlabel``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=120)  # Agg canvas, no pyplot: the caller's backend is left alone
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, value in curves.items():
        single = isinstance(value, np.ndarray) or not len(value) or np.ndim(value[0]) == 0
        runs = [_errors(value)] if single else [_errors(v) for v in value]
        x = ced(runs[0], threshold)[0]
        y = np.mean([ced(e, threshold)[1] for e in runs], axis=0)
        seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
        ax.plot(100 * x, y, label=f"{name}{seeds}: NME {100 * np.mean([e.mean() for e in runs]):.2f}%, "
                                  f"AUC@{100 * threshold:g}% {100 * np.mean([auc(e, threshold) for e in runs]):.2f}")
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"{xlabel} (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8 if len(curves) < 5 else 7)
    return save_png(fig, path)


def save_png(fig, path: str | Path) -> Path:
    """Lay out a matplotlib Figure and write it to ``path`` as PNG, atomically (parents created)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


@dataclass(frozen=True)
class SubsetRow:
    """One column of Table IX: a subset's size and its mean NME, FR and AUC (fractions)."""

    subset: str
    count: int
    nme: float
    failure_rate: float
    auc: float


def _summary(name: str, e: np.ndarray, threshold: float) -> SubsetRow:
    if len(e) == 0:
        return SubsetRow(name, 0, float("nan"), float("nan"), float("nan"))
    return SubsetRow(name, len(e), float(e.mean()), failure_rate(e, threshold), auc(e, threshold))


def wflw_subset_table(
    errors: np.ndarray,
    attributes: np.ndarray | Sequence[Mapping],
    threshold: float = 0.1,
) -> list[SubsetRow]:
    """Rows ``test, pose, expression, illumination, make-up, occlusion, blur`` as in Table IX.

    ``attributes``: (N, 6) 0/1 flags in WFLW file order, or one mapping per face with the keys
    of ``WFLW_ATTRIBUTES`` (e.g. ``record.attributes``).
    """
    e = _errors(errors)
    if len(attributes) and isinstance(attributes[0], Mapping):
        flags = np.array([[bool(a.get(k, 0)) for k in WFLW_ATTRIBUTES] for a in attributes])
    else:
        flags = np.asarray(attributes).astype(bool)
    if flags.shape != (len(e), len(WFLW_ATTRIBUTES)):
        raise ValueError(f"attributes must be ({len(e)}, {len(WFLW_ATTRIBUTES)}) flags, got {flags.shape}")
    rows = [_summary("test", e, threshold)]
    rows += [_summary(name, e[flags[:, j]], threshold) for j, name in enumerate(WFLW_ATTRIBUTES)]
    return rows


def format_subset_table(tables: Mapping[str, Sequence[SubsetRow]], field: str = "nme") -> str:
    """Methods as rows and subsets as columns, like Table IX; ``field`` in nme / failure_rate /
    auc, printed in percent."""
    if field not in ("nme", "failure_rate", "auc"):
        raise ValueError(f"field must be nme, failure_rate or auc, got {field!r}")
    if not tables:
        return ""
    columns = [r.subset for r in next(iter(tables.values()))]
    width = max(12, *(len(n) for n in tables))
    lines = [f"{field:<{width}}" + "".join(f"{c:>13}" for c in columns)]
    for name, rows in tables.items():
        lines.append(f"{name:<{width}}" + "".join(f"{100 * getattr(r, field):>13.2f}" for r in rows))
    lines.append(f"{'faces':<{width}}" + "".join(f"{r.count:>13d}" for r in next(iter(tables.values()))))
    return "\n".join(lines)


def group_mean(errors: np.ndarray, labels: Sequence) -> dict:
    """Mean error per label (e.g. SynthFaces domain name -> mean NME), labels in sorted order."""
    e = _errors(errors)
    labels = np.asarray(labels)
    if labels.shape != e.shape:
        raise ValueError(f"need one label per error: {labels.shape} labels for {e.shape} errors")
    return {k.item() if hasattr(k, "item") else k: float(e[labels == k].mean()) for k in np.unique(labels)}


def _errors(errors: np.ndarray) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise ValueError("no errors given (0 faces)")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"errors contain {int(np.sum(~np.isfinite(e)))} non-finite values")
    return e
