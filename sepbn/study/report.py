"""The study table as markdown and its files (:func:`write_table`), and a plain-words verdict per comparison.

Numbers are percentages (NME, FR, AUC are fractions in the JSON); ``a ± b`` is mean ± sample sd
over seeds; a difference reads "variant − baseline" (negative NME = the variant is better).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..io import atomic_write_text
from .curves import plot_learning_curves
from .spec import DEFAULT_EFFECT
from .table import build_table, plot_mean_ced

__all__ = ["format_markdown", "verdict", "write_table", "ALPHA"]

ALPHA = 0.05  # significance level of the verdicts (the CI is 95 %)


def _pct(x, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def _p(x) -> str:
    if x is None:
        return "–"
    return f"{x:.2g}" if x >= 1e-4 else "<1e-4"


def _mean_sd(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    sd = "" if stat.get("sd") is None else f" ± {_pct(stat['sd'])}"
    return f"{_pct(stat['mean'])}{sd}"


def _diff(cmp: dict | None, key: str = "nme") -> tuple[str, str, str]:
    """(difference with CI, p of the seeds' t-test, p of the faces' Wilcoxon test) as cells."""
    if not cmp or key not in cmp:
        return "–", "–", "–"
    t = cmp[key]
    ci = "" if t["ci_low"] is None else f" ({_pct(t['ci_low'])}, {_pct(t['ci_high'])})"
    w = cmp.get("nme_faces") if key == "nme" else None
    return f"{_pct(t['mean'], 2)}{ci}", _p(t["p"]), _p(w["p"]) if w else "–"


def _seeds_cell(info: dict, total: int) -> str:
    extra = []
    if info["failed"]:
        extra.append(f"{len(info['failed'])} failed")
    if info.get("unfinished"):
        extra.append(f"{len(info['unfinished'])} unfinished")
    if info["missing"]:
        extra.append(f"{len(info['missing'])} missing")
    return f"{len(info['done'])}/{total}" + (f" ({', '.join(extra)})" if extra else "")


def _minutes(ts: dict) -> str:
    def m(s):
        if s["mean"] is None:
            return "–"
        return f"{s['mean'] / 60:.1f}" + ("" if s["sd"] is None else f" ± {s['sd'] / 60:.1f}")
    return f"{m(ts['wall'])} / {m(ts['cpu'])}"


def _power(cmp: dict | None) -> str:
    need = (cmp or {}).get("seeds_for_80")
    if not need:
        return ""
    return "> 1000" if need["seeds"] is None else str(need["seeds"])


def format_markdown(table: dict) -> str:
    """The whole study table as markdown (see the module doc)."""
    keys, base, total = table["metrics"], table["baseline"], len(table["seeds"])
    heads = {"nme": "NME %", **{k: f"{k.upper()} %" for k in keys[1:]}}
    lines = [f"# Study {table['study']}", "",
             f"Seeds {table['seeds']}; baseline **{base}**; weights: {table['eval']['checkpoint']}. "
             "Mean ± sd over seeds; Δ = variant − baseline on the same seed, with its 95 % CI; "
             "p (t) = paired t-test over seeds; p (W) = Wilcoxon signed-rank test on the faces (each face's "
             "NME averaged over the paired seeds); seeds for 80 % = seeds the t-test needs to detect a Δ of "
             f"{100 * table['eval'].get('effect', DEFAULT_EFFECT):.2f} NME points (fixed in advance) with 80 % "
             "power at the measured sd.", ""]
    for ds, entry in table["datasets"].items():
        lines += [f"## {ds}: {entry.get('faces', '?')} faces, {entry.get('normalizer', 'NME')}", ""]
        cols = ["variant", "seeds", *[heads[k] for k in keys], f"Δ NME vs {base} (95 % CI)", "p (t)", "p (W)",
                "seeds for 80 %", "train min wall / CPU"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for v, row in entry["variants"].items():
            info = table["variants"][v]
            diff = ("baseline", "", "") if v == base else _diff(row.get("vs_baseline"))
            cells = [v, _seeds_cell(info, total), *[_mean_sd(row.get(k)) for k in keys], *diff,
                     _power(row.get("vs_baseline")), _minutes(info["train_seconds"])]
            lines.append("| " + " | ".join(cells) + " |")
        seen = [d for row in entry["variants"].values() for d in row["domains"]]  # evaluation order
        domains = sorted(dict.fromkeys(seen), key=lambda d: d.startswith("subset "))
        if domains:
            lines += ["", f"Per sub-domain / subset, NME % ({ds}):", "",
                      f"| sub-domain | faces | variant | NME % | Δ vs {base} (95 % CI) | p (t) | p (W) |",
                      "|---|---|---|---|---|---|---|"]
            for d in domains:
                for v, row in entry["variants"].items():
                    drow = row["domains"].get(d)
                    if drow is None:
                        continue
                    diff = ("baseline", "", "") if v == base else _diff(drow.get("vs_baseline"))
                    cells = [d, str(drow["faces"]), v, _mean_sd(drow.get("nme")), *diff]
                    lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    problems = [(v, s, e) for v, info in table["variants"].items() for s, e in info["failed"].items()]
    if problems:
        lines += ["Failed runs:", ""]
        lines += [f"- {v}/seed{s}: {e['step']}: {e['error']} (log: {e['log']})" for v, s, e in problems]
        lines.append("")
    unfinished = [f"{v}/seed{s}" for v, info in table["variants"].items() for s in info.get("unfinished", [])]
    if unfinished:
        lines += [f"Started, not finished (running, interrupted or killed): {', '.join(unfinished)}", ""]
    missing = [f"{v}/seed{s}" for v, info in table["variants"].items() for s in info["missing"]]
    if missing:
        lines += [f"Not started yet: {', '.join(missing)}", ""]
    return "\n".join(lines).rstrip() + "\n"


def verdict(cmp: dict | None, baseline: str, variant: str, alpha: float = ALPHA) -> str:
    """One sentence: is ``variant``'s NME difference from ``baseline`` beyond the seed noise?"""
    if not cmp or "nme" not in cmp or cmp["nme"]["p"] is None:
        return f"{variant} vs {baseline}: not enough paired seeds to tell."
    t = cmp["nme"]
    delta = 100 * t["mean"]
    better = "lower (better)" if delta < 0 else "higher (worse)"
    ci = f"95 % CI {100 * t['ci_low']:+.2f} to {100 * t['ci_high']:+.2f}"
    n = len(cmp["seeds"])
    if t["p"] < alpha:
        return (f"{variant} vs {baseline}: NME {abs(delta):.2f} points {better} ({ci}, p = {t['p']:.2g} over "
                f"{n} seeds): beyond the seed noise.")
    faces = cmp.get("nme_faces")
    note = ""
    if faces and faces["p"] is not None and faces["p"] < alpha:
        note = (f" The per-face test does find a shift (p = {faces['p']:.2g}), but another seed could undo it.")
    return (f"{variant} vs {baseline}: NME {delta:+.2f} points ({ci}, p = {t['p']:.2g} over {n} seeds): "
            f"within the seed noise.{note}")


def write_table(out: Path, baseline: str | None = None) -> str:
    """Build the table of study folder ``out``, write table.json / table.md / ced*.png; return the markdown.

    With another ``baseline`` than the study's, the files are ``table-vs-<baseline>.json/.md``.
    """
    table = build_table(out, baseline)
    text = format_markdown(table)
    stem = "table" if baseline is None else f"table-vs-{baseline}"
    atomic_write_text(out / f"{stem}.json", json.dumps(table, indent=2))
    atomic_write_text(out / f"{stem}.md", text)
    threshold = table["eval"]["fr_thresholds"][-1]
    plots = []
    for i, (ds, entry) in enumerate(table["datasets"].items()):
        path = out / ("ced.png" if i == 0 else f"ced-{ds}.png")
        if plot_mean_ced(out, ds, path, threshold, entry.get("normalizer", "NME")) is not None:
            plots.append(str(path))
    if plots:
        text += f"\nCED (mean over seeds): {', '.join(plots)}\n"
    curves = plot_learning_curves(out, out / "curves.png")
    if curves is not None:
        text += f"Learning curves (every run): {curves}\n"
    return text
