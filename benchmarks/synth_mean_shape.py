"""How hard is SynthFaces? NME of simple baselines, per sub-domain and attribute, every protocol.

Mean shape: the mean of the training faces' points in box-normalised coordinates
(``(x - x_min) / w``, ``(y - y_min) / h`` of the face box), placed into each test face's box. It
knows each face's exact box, so all it lacks is the pose, identity and expression of the face;
only the geometry is needed (no rendering), so thousands of faces take seconds.

``--ridge``: a learned baseline that must look at the image: ridge regression from the 32x32
grey crop of the face box (enlarged 1.2x) to the box-normalised points, fitted on the rendered
training faces. It shows that the task is learnable and harder at large pose and under occluders.

NME uses each protocol's default normaliser (paper section V-A; printed with the numbers) and,
for comparison, the face box ``sqrt(w h)``.

    python benchmarks/synth_mean_shape.py                  # 4000 train / 2000 test faces
    python benchmarks/synth_mean_shape.py --ridge --train 3000 --test 1000
    python benchmarks/synth_mean_shape.py --domains "left-profile:1,frontal:1,right-profile:1"
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from sepbn.data.protocols import get_protocol
from sepbn.data.synth import DEFAULT_DOMAINS, FORMATS, parse_domains, sample_face, synthesize
from sepbn.evaluation.metrics import group_mean, nme, normalizer_label


def faces(seed: int, start: int, num: int, domains, size: int, render: bool):
    if render:
        return [synthesize(i, seed=seed, domains=domains, size=(size, size)) for i in range(start, start + num)]
    return [sample_face(seed, i, domains, (size, size)) for i in range(start, start + num)]


def points(f, name: str) -> np.ndarray:
    return f.points[name] if f.points else f.geom[name]


def crops(fs, boxes: np.ndarray, side: int = 32) -> np.ndarray:
    """Grey crops of the boxes enlarged 1.2x, (N, side * side) float32, standardised per face."""
    out = np.empty((len(fs), side * side), np.float32)
    for k, (f, (x0, y0, x1, y1)) in enumerate(zip(fs, boxes)):
        c, half = np.array([x0 + x1, y0 + y1]) / 2, 0.6 * max(x1 - x0, y1 - y0)
        scale = side / (2 * half)
        m = np.array([[scale, 0, side / 2 - scale * c[0]], [0, scale, side / 2 - scale * c[1]]], np.float32)
        grey = cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY)
        v = cv2.warpAffine(grey, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        v = v.astype(np.float32).ravel()
        out[k] = (v - v.mean()) / (v.std() + 1e-6)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--domains", help="as for `sepbn synth --domains` (default 15/70/15)")
    ap.add_argument("--ridge", action="store_true", help="also fit the ridge regressor on rendered faces")
    ap.add_argument("--alpha", type=float, default=100.0, help="ridge penalty")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    domains = parse_domains(args.domains) if args.domains else DEFAULT_DOMAINS
    train = faces(args.seed, 0, args.train, domains, args.size, args.ridge)
    test = faces(args.seed, args.train, args.test, domains, args.size, args.ridge)

    def boxes(fs):
        return np.array([[*points(f, "wflw98").min(0), *points(f, "wflw98").max(0)] for f in fs])

    btr, bte = boxes(train), boxes(test)
    labels = np.array([f.domain for f in test])
    large_yaw = np.array([abs(f.pose.yaw) > 45 for f in test])
    occluder = np.array([f.look.occluder is not None for f in test])
    if args.ridge:  # occluded = an occluder covers at least one point
        occluder = np.array([bool(f.flags["occlusion"]) for f in test])
        xtr, xte = crops(train, btr), crops(test, bte)
        # ridge in the dual: (X X^T + alpha I)^-1 Y, N x N with N = training faces
        gram = xtr @ xtr.T
        dual = np.linalg.solve(gram + args.alpha * np.eye(len(gram), dtype=np.float32), np.eye(len(gram), dtype=np.float32))
        project = xte @ xtr.T @ dual  # (N_test, N_train): predictions are project @ targets
    print(f"SynthFaces baseline NME (%), {args.train} train / {args.test} test faces, seed {args.seed}, "
          f"{args.size}px; domains: " + ", ".join(f"{d.name} {d.weight:g}" for d in domains))
    names = [d.name for d in domains]
    head = f"{'baseline, protocol, normaliser':<54}{'all':>8}" + "".join(f"{n:>15}" for n in names)
    # with rendered faces: an occluder covers a point; without: an occluder was drawn
    occ_head = ("occluded", "not") if args.ridge else ("occluder", "none")
    head += f"{'|yaw|<=45':>11}{'|yaw|>45':>10}{occ_head[0]:>10}{occ_head[1]:>8}"
    print(head)
    wh = lambda b: (b[:, 2:] - b[:, :2])[:, None, :]  # noqa: E731
    for name in FORMATS:
        p = get_protocol(name)
        norm_tr = (np.stack([points(f, name) for f in train]) - btr[:, None, :2]) / wh(btr)
        gt = np.stack([points(f, name) for f in test])
        preds = {"mean shape": bte[:, None, :2] + norm_tr.mean(0)[None] * wh(bte)}
        if args.ridge:
            mean = norm_tr.mean(0)
            fit = (project @ (norm_tr - mean).reshape(len(train), -1)).reshape(gt.shape) + mean
            preds["ridge 32px"] = bte[:, None, :2] + fit * wh(bte)
        for base, pred in preds.items():
            for normalizer in dict.fromkeys([p.default_normalizer, "box"]):
                e = 100 * nme(pred, gt, p, boxes=bte, normalizer=normalizer)
                per = group_mean(e, labels)
                row = f"{base + ', ' + normalizer_label(p, normalizer)[5:-1]:<54}{e.mean():8.2f}"
                row += "".join(f"{per.get(n, float('nan')):15.2f}" for n in names)
                row += f"{e[~large_yaw].mean():11.2f}{e[large_yaw].mean():10.2f}"
                row += f"{e[occluder].mean():10.2f}{e[~occluder].mean():8.2f}"
                print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
