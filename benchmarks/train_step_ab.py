"""Has the SepBN train step got slower? The same timing run against two checkouts of this repository.

Issue 18 changed only SepBN's inference path, and asks that the training path not get slower. This script
times the train step (forward, backward, SGD step; batch 16, 128 px, 2 threads) of the BN and SepBN versions
of Vanilla CNN width 0.25 and MobileNetV2 (SepBN at bn3) in each given checkout, interleaved within a
checkout, each checkout in its own process (so each imports its own ``sepbn``; deploy_overhead.py's train
cell needs imports an older checkout may lack), in alternating rounds:

    git worktree add /tmp/before 070889d
    python benchmarks/train_step_ab.py /tmp/before . --rounds 2 --out benchmarks/results/train_step_ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

NETS = {"vanilla-0.25": dict(arch="vanilla", width=0.25),
        "mobilenetv2-bn3": dict(arch="mobilenetv2", placement=["bn3"])}
PROTOCOL, SIZE, BATCH = "wflw98", 128, 16


def time_tree(steps: int) -> dict:
    """Median train-step milliseconds of BN and SepBN per network, in the ``sepbn`` this process imports."""
    import torch

    import sepbn
    from sepbn.models import create_model

    if not Path(sepbn.__file__).resolve().is_relative_to(Path(sys.path[0]).resolve()):
        raise SystemExit(f"imported {sepbn.__file__}, not the checkout {sys.path[0]}")
    torch.set_num_threads(2)
    result = {}
    for name, kwargs in NETS.items():
        kwargs = dict(kwargs)
        placement = kwargs.pop("placement", None)
        torch.manual_seed(0)
        models = {"bn": create_model(protocols=[PROTOCOL], norm="bn", input_size=SIZE, **kwargs),
                  "sepbn": create_model(protocols=[PROTOCOL], norm="sepbn", placement=placement,
                                        input_size=SIZE, **kwargs)}
        x = torch.randn(BATCH, 3, SIZE, SIZE)
        runs = {}
        for key, model in models.items():
            opt = torch.optim.SGD(model.train().parameters(), lr=1e-6, momentum=0.9)

            def step(model=model, opt=opt):
                opt.zero_grad(set_to_none=True)
                model(x, PROTOCOL)[PROTOCOL].square().mean().backward()
                opt.step()
            step()  # warm-up
            runs[key] = step
        samples = {"bn": [], "sepbn": []}
        for i in range(steps):
            for key in (("bn", "sepbn") if i % 2 == 0 else ("sepbn", "bn")):
                start = time.perf_counter()
                runs[key]()
                samples[key].append(1000 * (time.perf_counter() - start))
        bn, sep = statistics.median(samples["bn"]), statistics.median(samples["sepbn"])
        result[name] = {"bn_ms": bn, "sepbn_ms": sep, "ratio": sep / bn}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", help="checkouts of this repository (each imports its own sepbn)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each runs every checkout once, in turn")
    ap.add_argument("--steps", type=int, default=25, help="timed steps per variant and round")
    ap.add_argument("--out", help="JSON file for the rows")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one checkout's timing, in a process that imports that checkout's sepbn
        sys.path.insert(0, args.child)
        print(json.dumps(time_tree(args.steps)))
        return 0
    if not args.trees:
        ap.error("name at least one checkout")
    commits = {tree: subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, check=True).stdout.strip() for tree in args.trees}
    rows = []
    for r in range(args.rounds):
        for tree, commit in commits.items():
            out = subprocess.run([sys.executable, __file__, "--child", str(Path(tree).resolve()), "--steps",
                                  str(args.steps)], capture_output=True, text=True, check=True).stdout
            for net, cell in json.loads(out.strip().splitlines()[-1]).items():
                rows.append(dict(round=r, tree=tree, commit=commit, net=net, **cell))
                print(f"round {r} {commit} {net}: BN {cell['bn_ms']:.1f} ms, SepBN {cell['sepbn_ms']:.1f} ms, "
                      f"SepBN/BN {cell['ratio']:.3f}", flush=True)
    if args.out:
        from sepbn.io import atomic_write_text  # not at the top: a child process must import its checkout's sepbn

        payload = {"steps": args.steps, "batch": BATCH, "size": SIZE, "threads": 2, "rows": rows}
        atomic_write_text(Path(args.out), json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
