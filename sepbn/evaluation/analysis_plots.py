"""Plots of `sepbn.evaluation.analysis` (PNG, matplotlib's Agg canvas; pyplot's backend is left alone).

One figure per question: attention entropy per layer, mean pi per sub-domain (a heat map, one row per
layer and channel group), similarity of the K mapping sets per layer (paper Fig. 4), and the t-SNE of
backbone features (paper Fig. 3). Files are written atomically (`sepbn.io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import atomic_write

__all__ = ["plot_entropy", "plot_pi", "plot_similarity", "plot_tsne"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))


def plot_entropy(layers: Mapping[str, dict], path: str | Path) -> Path:
    """Bars: entropy of pi / log K per layer (1 = uniform attention, 0 = one mapping set per face)."""
    names = list(layers)
    fig = _figure(max(4.0, 0.5 * len(names) + 2), 3.6)
    ax = fig.subplots()
    ax.bar(range(len(names)), [layers[n]["entropy_normalised"] for n in names], color="tab:blue")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="uniform pi")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("entropy of pi / log K")
    ax.set_title("SepBN attention entropy per layer")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pi(layers: Mapping[str, dict], grouping: str, path: str | Path) -> Path:
    """Heat map of mean pi: rows = (layer, channel group), columns = (sub-domain label, branch k)."""
    names = list(layers)
    labels = list(layers[names[0]]["by"][grouping])
    k = layers[names[0]]["branches"]
    rows, row_names = [], []
    for n in names:
        by = layers[n]["by"][grouping]
        g = layers[n]["groups"]
        for j in range(g):
            rows.append([by[lab]["mean_pi"][j][b] for lab in labels for b in range(k)])
            row_names.append(n if g == 1 else f"{n} g{j}")
    values = np.asarray(rows)
    fig = _figure(max(4.0, 0.45 * values.shape[1] + 3), max(3.0, 0.28 * len(rows) + 1.5))
    ax = fig.subplots()
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(rows)), row_names, fontsize=7)
    ax.set_xticks(range(values.shape[1]), [f"{lab} k{b}" for lab in labels for b in range(k)],
                  rotation=60, ha="right", fontsize=7)
    for i in range(1, len(labels)):
        ax.axvline(i * k - 0.5, color="white", linewidth=1.5)
    ax.set_title(f"mean pi per {grouping}")
    fig.colorbar(image, ax=ax, label="mean pi")
    return _save(fig, path)


def plot_similarity(similarity: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path) -> Path:
    """Per layer and parameter kind: eq. (2) cosine (left) and relative spread (right) of the K sets."""
    names = list(similarity)
    kinds = list(similarity[names[0]])
    fig = _figure(max(6.0, 0.9 * len(names) + 3), 3.6)
    axes = fig.subplots(1, 2)
    width = 0.8 / len(kinds)
    for ax, stat, label in ((axes[0], "cosine", "eq. (2) cosine similarity"),
                            (axes[1], "relative_spread", "relative spread ||p_i - p_j|| / ||p||")):
        for i, kind in enumerate(kinds):
            x = np.arange(len(names)) + (i - (len(kinds) - 1) / 2) * width
            ax.bar(x, [similarity[n][kind][stat] for n in names], width, label=kind)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylim(min(0.0, *(similarity[n][k]["cosine"] for n in names for k in kinds if np.isfinite(
        similarity[n][k]["cosine"]))), 1.02)
    return _save(fig, path)


def plot_tsne(coords: np.ndarray, labels: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Scatter of the 2-D t-SNE, one colour per label."""
    labels = np.asarray([str(v) for v in labels])
    fig = _figure(5.5, 5.0)
    ax = fig.subplots()
    for lab in sorted(set(labels.tolist())):
        mask = labels == lab
        ax.scatter(coords[mask, 0], coords[mask, 1], s=6, alpha=0.7, label=f"{lab} ({int(mask.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    return _save(fig, path)
