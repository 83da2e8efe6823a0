"""The project's fixed train / held-out split of the real faces in ``../shared/data`` (issue 11).

Every real-data comparison (sepbn runs, ``sepbn study`` configs, the dlib peer in ``dlib_peer.py``)
trains and scores on exactly these faces. A dataset's records are read in the reader's order, a
numpy ``default_rng(seed)`` permutation is drawn, and the first ``round(n * val_fraction)`` faces of it
are held out (never trained on); the rest are the training faces:

- ``300w``: the 1,207 300-W faces (AFW + HELEN train, 68 points) -> 1,026 train / 181 val;
- ``mtfl``: MTFL's 10,000 training faces (5 points; only its training split is held here) -> 8,500 / 1,500.

Recipes are chosen on a *tuning* split of the training faces only (issue 17): the training faces are
permuted again (seed 1) and 15 % of them become ``{name}_tune.csv``, the rest ``{name}_fit.csv``
(300-W: 872 fit / 154 tune; MTFL: 7,225 / 1,275). The held-out ``val`` faces are scored once, by
the final recipe.

Each part is written as a generic CSV annotation list (``sepbn.data.formats``, ``fmt = "csv"``) that
references the original images by absolute path (``images = "/"``); nothing is copied. The boxes are
the ones the readers give: 300-W's tight landmark box, MTFL's square of 2x the 5-point box's longer
side. Training and evaluation enlarge them with the dataset's ``box_scale``.

    python benchmarks/real_splits.py --data ../shared/data --out runs/real_splits
    # -> runs/real_splits/{300w,mtfl}_{train,val}.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sepbn.data.formats import read_records, write_records

__all__ = ["DATASETS", "read_dataset", "split_indices", "write_split"]

# name -> (format, annotation path under the data folder, image root under it or None, protocol)
DATASETS = {
    "300w": ("300w", "300w", None, "300w68"),
    "mtfl": ("mtfl", "mtfl/training.txt", "mtfl", "5pt"),
}
VAL_FRACTION = 0.15
SEED = 0
TUNE_SEED = 1  # the tuning split of the training faces: fit / tune
TUNE_PARTS = {"train": "fit", "val": "tune"}


def read_dataset(name: str, data: Path) -> list:
    """The records of ``name`` (a key of `DATASETS`) under the data folder, in the reader's order."""
    if name not in DATASETS:
        raise ValueError(f"unknown real dataset {name!r}; choose one of {sorted(DATASETS)}")
    fmt, source, images, _ = DATASETS[name]
    return list(read_records(fmt, Path(data) / source, images=None if images is None else Path(data) / images))


def split_indices(n: int, val_fraction: float = VAL_FRACTION, seed: int = SEED,
                  limit: int | None = None) -> dict[str, np.ndarray]:
    """``{"train": idx, "val": idx}``: a seeded permutation of ``range(n)`` (cut to ``limit``), val first."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    if limit:
        order = order[:limit]
    n_val = int(round(len(order) * val_fraction))
    return {"train": order[n_val:], "val": order[:n_val]}


def write_split(name: str, data: Path, out: Path, val_fraction: float = VAL_FRACTION, seed: int = SEED,
                limit: int | None = None) -> dict[str, Path]:
    """Write ``out/{name}_{train,val,fit,tune}.csv``; returns their paths by part (fit + tune = train)."""
    records = read_dataset(name, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, idx in split_indices(len(records), val_fraction, seed, limit).items():
        paths[part] = out / f"{name}_{part}.csv"
        write_records("csv", [records[i] for i in idx], paths[part], images=Path("/"))
    train = split_indices(len(records), val_fraction, seed, limit)["train"]
    for part, sub in split_indices(len(train), val_fraction, TUNE_SEED).items():
        paths[TUNE_PARTS[part]] = out / f"{name}_{TUNE_PARTS[part]}.csv"
        write_records("csv", [records[i] for i in train[sub]], paths[TUNE_PARTS[part]], images=Path("/"))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with 300w/ and mtfl/")
    ap.add_argument("--out", default="runs/real_splits")
    ap.add_argument("--datasets", nargs="+", default=sorted(DATASETS), choices=sorted(DATASETS))
    ap.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    for name in args.datasets:
        paths = write_split(name, Path(args.data).resolve(), Path(args.out), args.val_fraction, args.seed)
        counts = {part: sum(1 for _ in open(p)) - 1 for part, p in paths.items()}
        print(f"{name}: " + ", ".join(f"{part} {counts[part]} faces -> {p}" for part, p in paths.items()))


if __name__ == "__main__":
    main()
