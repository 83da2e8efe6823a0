"""The "seeds for 80 %" column of docs/science.md, from the committed study tables.

For every paired NME comparison in the given ``table.json`` files: the number of seeds a paired
t-test at alpha = 0.05 needs to detect a difference of ``--effect`` (fixed in advance: 0.1 NME
points, the size that would matter to a user) with 80 % power, at the sd of the paired differences
the study measured (``sepbn.evaluation.stats.seeds_for_power``). New studies get the same column
from ``sepbn study table`` (the study file's ``eval.effect``).

    python benchmarks/science_power.py docs/science/*/table*.json --out docs/science/power.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sepbn.evaluation.stats import seeds_for_power
from sepbn.io import atomic_write_text


def rows(path: Path, effect: float) -> list[dict]:
    table = json.loads(path.read_text())
    out = []
    for ds, entry in table["datasets"].items():
        for variant, row in entry["variants"].items():
            nme = (row.get("vs_baseline") or {}).get("nme")
            if not nme or nme.get("sd") is None:
                continue
            out.append({"table": str(path), "dataset": ds, "variant": variant, "baseline": table["baseline"],
                        "seeds": nme["n"], "delta": nme["mean"], "sd": nme["sd"], "effect": effect,
                        "seeds_for_80": seeds_for_power(effect, nme["sd"])})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", type=Path)
    ap.add_argument("--effect", type=float, default=0.001, help="NME difference as a fraction (0.001 = 0.1 points)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = [r for t in args.tables for r in rows(t, args.effect)]
    print("| table | variant − baseline | seeds | Δ NME | sd of Δ | seeds for 80 % at Δ = "
          f"{100 * args.effect:.2f} |\n|---|---|---|---|---|---|")
    for r in result:
        need = "> 1000" if r["seeds_for_80"] is None else r["seeds_for_80"]
        print(f"| {r['table']} | {r['variant']} − {r['baseline']} | {r['seeds']} | {100 * r['delta']:+.2f} | "
              f"{100 * r['sd']:.2f} | {need} |")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
