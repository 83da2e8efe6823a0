"""How hard is SynthFaces? NME of the mean shape, per sub-domain and attribute, every protocol.

The "model" is the mean of the training faces' points in box-normalised coordinates
(``(x - x_min) / w``, ``(y - y_min) / h`` of the face box), placed into each test face's box. It
knows each face's exact box, so all it lacks is the pose, identity and expression of the face;
a landmark model must beat it by far. NME uses each protocol's default normaliser (paper
section V-A; printed with the numbers) and, for comparison, the face box ``sqrt(w h)``.
Only the geometry is needed (no rendering), so thousands of faces take seconds.

    python benchmarks/synth_mean_shape.py                  # 4000 train / 2000 test faces
    python benchmarks/synth_mean_shape.py --domains "left-profile:1,frontal:1,right-profile:1"
"""

from __future__ import annotations

import argparse

import numpy as np

from sepbn.data.protocols import get_protocol
from sepbn.data.synth import DEFAULT_DOMAINS, FORMATS, parse_domains, sample_face
from sepbn.evaluation.metrics import group_mean, nme, normalizer_label


def faces(seed: int, start: int, num: int, domains, size: int):
    out = []
    for i in range(start, start + num):
        f = sample_face(seed, i, domains, (size, size))
        out.append(f)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--domains", help="as for `sepbn synth --domains` (default 15/70/15)")
    args = ap.parse_args(argv)
    domains = parse_domains(args.domains) if args.domains else DEFAULT_DOMAINS
    train = faces(args.seed, 0, args.train, domains, args.size)
    test = faces(args.seed, args.train, args.test, domains, args.size)

    def boxes(fs):
        return np.array([[*f.geom["wflw98"].min(0), *f.geom["wflw98"].max(0)] for f in fs])

    btr, bte = boxes(train), boxes(test)
    labels = np.array([f.domain for f in test])
    large_yaw = np.array([abs(f.pose.yaw) > 45 for f in test])
    occluder = np.array([f.look.occluder is not None for f in test])
    print(f"SynthFaces mean-shape NME (%), {args.train} train / {args.test} test faces, seed {args.seed}, "
          f"{args.size}px; domains: " + ", ".join(f"{d.name} {d.weight:g}" for d in domains))
    names = [d.name for d in domains]
    head = f"{'protocol / normaliser':<48}{'all':>8}" + "".join(f"{n:>15}" for n in names)
    head += f"{'|yaw|<=45':>11}{'|yaw|>45':>10}{'occluder':>10}{'none':>8}"
    print(head)
    for name in FORMATS:
        p = get_protocol(name)
        wh = lambda b: (b[:, 2:] - b[:, :2])[:, None, :]  # noqa: E731
        norm_tr = (np.stack([f.geom[name] for f in train]) - btr[:, None, :2]) / wh(btr)
        mean = norm_tr.mean(0)
        gt = np.stack([f.geom[name] for f in test])
        pred = bte[:, None, :2] + mean[None] * wh(bte)
        for normalizer in dict.fromkeys([p.default_normalizer, "box"]):
            e = 100 * nme(pred, gt, p, boxes=bte, normalizer=normalizer)
            per = group_mean(e, labels)
            row = f"{normalizer_label(p, normalizer)[4:]:<48}{e.mean():8.2f}"
            row += "".join(f"{per.get(n, float('nan')):15.2f}" for n in names)
            row += f"{e[~large_yaw].mean():11.2f}{e[large_yaw].mean():10.2f}"
            row += f"{e[occluder].mean():10.2f}{e[~occluder].mean():8.2f}"
            print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
