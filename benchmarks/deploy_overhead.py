"""What SepBN costs where models are deployed (issue 12): SepBN / BN time ratios for the three networks.

Rows: Vanilla CNN (Table I) at width 1.0 and 0.25 with SepBN in every block, ResNeXt-50 and MobileNetV2
with SepBN at BN3 (Table X), all at 128 px, one 98-point head; and the bundled 300w68 model (issue 17)
against a BN twin at batch 1, in eager PyTorch and ONNX Runtime. Targets (issue 18): inference SepBN/BN at
most 1.15 at batch 1 and 1.10 at batch 32, the shipped model at most 1.10 in the backend ``sepbn predict``
uses (ONNX Runtime where it is installed, ``sepbn.inference.runtime``; 1.15 in the other); the
train step within issue 12's targets (1.10 Vanilla and ResNeXt, 1.15 MobileNetV2). Each cell times the BN
network against the SepBN network, interleaved (one call of each in turn, so background load hits both
alike), and prints the ratio of medians:

- inference, eager PyTorch: both models through ``sepbn.nn.fuse_for_inference`` (BN folded into the
  convolutions; SepBN's normalisation folded, its per-sample mixed affine left), 1 and 2 threads, batch 1, 32,
  on channels-last tensors as the torch backend of ``sepbn predict`` runs them (``--nchw``: plain NCHW tensors instead);
- inference, ONNX Runtime (CPU provider, graph optimisation on): the folded models exported with
  ``sepbn.inference.export.export_onnx``, intra-op threads 1 and 2, batch 1, 32, in the session
  ``sepbn predict`` opens (``sepbn.inference.runtime.session``: threads spin between the nodes of a call and
  stop when it returns, so the idle session of one variant does not compete with the other on a small machine);
- train step, eager: forward + backward + SGD step of the unfolded model in train mode, batch 16, 2 threads;
- with ``--device cuda`` and a GPU: eager folded inference (batch 1, 32) and the train step on the GPU.

Floor: the extra bytes SepBN must move per call divided by a memory bandwidth measured here (a large
tensor copy at the cell's thread count). Inference: per SepBN activation element one read for the
attention's pooling plus one read and one write for the per-sample affine (12 bytes in float32); the BN
network moves none of these (its BN is inside the convolution). Train step: one extra read (the pooling;
statistics, normalisation and backward passes are the same in number as BatchNorm's), 4 bytes per element.
``floor ratio`` = (BN time + floor) / BN time; ``extra ms`` = SepBN time - BN time.

Repeats: the script times one call of every variant first, then gives each cell an equal share of the
time left in ``--budget-min`` (default 11 minutes for the whole run, setup included) and prints the
repeats it used (at least ``--min-repeats``). ``--quick`` is a tiny functional check (64 px, narrow
networks, batch 1 and 4, one repeat): its numbers mean nothing.

    python benchmarks/deploy_overhead.py --out benchmarks/results/deploy_overhead.json
    python benchmarks/deploy_overhead.py --quick --nets vanilla-0.25
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from sepbn.inference.predictor import load_checkpoint
from sepbn.inference.pretrained import pretrained_path
from sepbn.inference.runtime import resolve_backend, session
from sepbn.models import create_model
from sepbn.nn import SepBatchNorm2d, fuse_for_inference

PROTOCOL = "wflw98"
# Inference (issue 18): batch 1 at most 1.15, batch 32 at most 1.10, the shipped model at batch 1 at most
# 1.10 in the backend ``sepbn predict`` uses (PREDICT_MODE). Train step (issue 12): per network.
INFER_TARGETS = {1: 1.15, 32: 1.10}
SHIPPED_TARGET = 1.10
# the cells of the backend sepbn predict picks by default here (--backend auto)
PREDICT_MODE = "infer-ort" if resolve_backend("auto", torch.device("cpu")) == "onnxruntime" else "infer-eager"
TRAIN_TARGETS = (1.10, 1.10, 1.15)
NETS = {  # name -> (create_model kwargs, index into TRAIN_TARGETS)
    "vanilla-1.0": (dict(arch="vanilla", width=1.0), 0),
    "vanilla-0.25": (dict(arch="vanilla", width=0.25), 0),
    "resnext50-bn3": (dict(arch="resnext50", placement=["bn3"]), 1),
    "mobilenetv2-bn3": (dict(arch="mobilenetv2", placement=["bn3"]), 2),
    # the bundled 300w68 model (its weights) against a BN twin of the same architecture (random weights:
    # folded BN costs the same whatever its values); inference at batch 1 only
    "shipped-300w68": (None, 0),
}


@dataclass
class Cell:
    net: str
    mode: str  # infer-eager | infer-ort | train
    device: str
    threads: int
    batch: int
    repeats: int = 0
    bn_ms: float = float("nan")
    sepbn_ms: float = float("nan")
    ratio: float = float("nan")
    target: float = float("nan")
    extra_mb: float = 0.0
    floor_ms: float = float("nan")
    floor_ratio: float = float("nan")
    bn_samples: list = field(default_factory=list)
    sepbn_samples: list = field(default_factory=list)


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime

    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "load_average_at_start": os.getloadavg(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bandwidth_gbs(threads: int, device: str = "cpu", mib: int = 256) -> float:
    """Copy bandwidth (bytes read + written per second, GB/s): median of 5 copies of ``mib`` MiB."""
    torch.set_num_threads(threads)
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(6):
        sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * src.numel() * 4 / statistics.median(times[1:]) / 1e9


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def sepbn_elements(model: nn.Module, size: int, protocol: str) -> int:
    """Activation elements per sample that enter SepBN layers (from the layer shapes of one forward)."""
    total = [0]
    hooks = [m.register_forward_hook(lambda _m, inp, _o: total.__setitem__(0, total[0] + inp[0][0].numel()))
             for m in model.modules() if isinstance(m, SepBatchNorm2d)]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 3, size, size), protocol)
    for h in hooks:
        h.remove()
    return total[0]


class Net:
    """BN and SepBN versions of one network: unfused (train), folded (eager inference), ONNX sessions."""

    def __init__(self, name: str, size: int, quick: bool, device: str, workdir: Path, nchw: bool = False,
                 ort_spin: bool = True) -> None:
        kwargs, self.target_index = NETS[name]
        self.nchw, self.ort_spin = nchw, ort_spin
        self.name, self.size, self.device = name, size, device
        torch.manual_seed(0)
        if kwargs is None:  # the shipped model: its own weights, protocol and size
            sepbn_model, _meta = load_checkpoint(pretrained_path("300w68"))
            args = dict(sepbn_model.model_args, norm="bn", placement=None, norm_kwargs={})
            self.protocol, self.size = args["protocols"][0], args["input_size"]
            self.models = {"bn": create_model(**args), "sepbn": sepbn_model}
        else:
            kwargs = dict(kwargs)
            if quick and kwargs["arch"] == "vanilla":
                kwargs["width"] /= 8
            elif quick and kwargs["arch"] == "mobilenetv2":
                kwargs["width"] = 0.25
            placement = kwargs.pop("placement", None)
            self.protocol = PROTOCOL
            self.models = {"bn": create_model(protocols=[PROTOCOL], norm="bn", input_size=size, **kwargs),
                           "sepbn": create_model(protocols=[PROTOCOL], norm="sepbn", placement=placement,
                                                 input_size=size, **kwargs)}
        self.elements = sepbn_elements(self.models["sepbn"], self.size, self.protocol)
        self.folded = {k: fuse_for_inference(m) for k, m in self.models.items()}
        self.workdir = workdir
        self.onnx: dict[str, Path] = {}
        self.sessions: dict[tuple[str, int], object] = {}

    def export(self) -> None:
        from sepbn.inference.export import SingleProtocolModule, export_onnx

        for key, model in self.folded.items():
            path = self.workdir / f"{self.name}-{key}.onnx"
            export_onnx(SingleProtocolModule(model, self.protocol), path, self.size)
            self.onnx[key] = path

    def runner(self, key: str, mode: str, threads: int, batch: int, device: str):
        """A no-argument callable doing one timed call of variant ``key`` in this cell."""
        x = torch.randn(batch, 3, self.size, self.size, device=device)
        eager_format = torch.contiguous_format if self.nchw else torch.channels_last
        if mode == "infer-ort":
            if (key, threads) not in self.sessions:
                self.sessions[key, threads] = session(self.onnx[key], threads, spin=self.ort_spin)
            ort_session = self.sessions[key, threads]
            feed = {"image": x.numpy()}
            return lambda: ort_session.run(None, feed)
        if mode == "infer-eager":
            model = self.folded[key].to(device, memory_format=eager_format)
            x = x.contiguous(memory_format=eager_format)

            def infer():
                with torch.inference_mode():
                    model(x, self.protocol)
                sync(device)
            return infer
        model = self.models[key].to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            model(x, self.protocol)[self.protocol].square().mean().backward()
            opt.step()
            sync(device)
        return step


def cells_for(net: Net, quick: bool, device: str) -> list[Cell]:
    if NETS[net.name][0] is None:  # the shipped model at batch 1; its target in sepbn predict's backend
        return [Cell(net.name, mode, "cpu", threads, 1,
                     target=SHIPPED_TARGET if mode == PREDICT_MODE else INFER_TARGETS[1])
                for mode in ("infer-eager", "infer-ort") for threads in (1, 2)]
    batches = (1, 4) if quick else (1, 32)
    out = []
    for mode in ("infer-eager", "infer-ort"):
        for threads in (1, 2):
            for batch in batches:
                target = INFER_TARGETS.get(batch, INFER_TARGETS[1])
                out.append(Cell(net.name, mode, "cpu", threads, batch, target=target))
    out.append(Cell(net.name, "train", "cpu", 2, 4 if quick else 16, target=TRAIN_TARGETS[net.target_index]))
    if device == "cuda":
        out += [Cell(net.name, "infer-eager", "cuda", 0, b, target=INFER_TARGETS.get(b, INFER_TARGETS[1]))
                for b in batches]
        out.append(Cell(net.name, "train", "cuda", 0, 4 if quick else 16, target=TRAIN_TARGETS[net.target_index]))
    return out


def time_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(cell: Cell, net: Net, repeats: int, bandwidth: float) -> None:
    if cell.device == "cpu":
        torch.set_num_threads(cell.threads)
    runs = {k: net.runner(k, cell.mode, cell.threads, cell.batch, cell.device) for k in ("bn", "sepbn")}
    for fn in runs.values():  # warm-up (allocator, oneDNN primitives, ORT arenas)
        fn()
    samples: dict[str, list[float]] = {"bn": [], "sepbn": []}
    for i in range(repeats):
        order = ("bn", "sepbn") if i % 2 == 0 else ("sepbn", "bn")
        for key in order:
            samples[key].append(1000 * time_once(runs[key]))
    cell.repeats = repeats
    cell.bn_samples, cell.sepbn_samples = samples["bn"], samples["sepbn"]
    cell.bn_ms, cell.sepbn_ms = statistics.median(samples["bn"]), statistics.median(samples["sepbn"])
    cell.ratio = cell.sepbn_ms / cell.bn_ms
    per_element = 4 if cell.mode == "train" else 12
    cell.extra_mb = per_element * net.elements * cell.batch / 1e6
    cell.floor_ms = cell.extra_mb / 1e3 / bandwidth * 1e3
    cell.floor_ratio = (cell.bn_ms + cell.floor_ms) / cell.bn_ms


def markdown(cells: list[Cell], info: dict, bandwidths: dict) -> str:
    lines = [f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; torch {info['torch']}, onnxruntime "
             f"{info['onnxruntime']}; load average at start {tuple(round(v, 2) for v in info['load_average_at_start'])}"
             + (f"; GPU {info['gpu']}" if "gpu" in info else ""),
             "Copy bandwidth (read + write): " + ", ".join(f"{k}: {v:.1f} GB/s" for k, v in bandwidths.items()),
             "Ratios: SepBN / BN medians of interleaved calls in this run; inference models folded "
             f"(fuse_for_inference), eager cells on {info.get('eager_layout', 'NCHW')} tensors; "
             f"ONNX Runtime threads {info.get('ort_threads', 'never spin')}; floor = extra bytes / bandwidth.",
             "",
             "| network | mode | device | threads | batch | BN ms | SepBN ms | SepBN/BN | target | met | extra ms "
             "| extra MB | floor ms | floor ratio | gap to floor | repeats |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        met = "yes" if c.ratio <= c.target else "no"
        threads = c.threads if c.device == "cpu" else "-"
        lines.append(f"| {c.net} | {c.mode} | {c.device} | {threads} | {c.batch} | {c.bn_ms:.2f} | {c.sepbn_ms:.2f} "
                     f"| {c.ratio:.3f} | {c.target:.2f} | {met} | {c.sepbn_ms - c.bn_ms:.2f} | {c.extra_mb:.1f} "
                     f"| {c.floor_ms:.2f} | {c.floor_ratio:.3f} | {c.ratio - c.floor_ratio:+.3f} | {c.repeats} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: add GPU rows (eager) when a GPU is present")
    parser.add_argument("--size", type=int, default=128, help="input side in pixels (the paper: 128)")
    parser.add_argument("--budget-min", type=float, default=11.0, help="wall-clock budget of the whole run")
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--max-repeats", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="tiny functional check; numbers mean nothing")
    parser.add_argument("--nchw", action="store_true",
                        help="eager cells on NCHW tensors (default: channels-last, as predict's torch backend runs)")
    parser.add_argument("--ort-no-spin", action="store_true",
                        help="ONNX Runtime threads never spin (sepbn predict's session before 2026-12-05)")
    parser.add_argument("--out", help="JSON file for the rows, machine and bandwidths")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no GPU present, CPU rows only", file=sys.stderr)
        device = "cpu"
    size = 64 if args.quick else args.size
    info = dict(machine_info(), eager_layout="NCHW" if args.nchw else "channels-last",
                ort_threads="never spin" if args.ort_no_spin else "spin within a call")
    bandwidths = {f"cpu {t} thread{'s' if t > 1 else ''}": bandwidth_gbs(t, mib=16 if args.quick else 256)
                  for t in (1, 2)}
    if device == "cuda":
        bandwidths["cuda"] = bandwidth_gbs(1, "cuda", 1024)
    workdir = Path(tempfile.mkdtemp(prefix="deploy_overhead_"))
    nets, cells = {}, []
    for name in args.nets:
        print(f"setting up {name} (models, fold, ONNX export) ...", file=sys.stderr, flush=True)
        nets[name] = Net(name, size, args.quick, device, workdir, args.nchw, not args.ort_no_spin)
        nets[name].export()
        cells += cells_for(nets[name], args.quick, device)
    # cost of one round of each cell (one call of each variant, after one warm-up call)
    costs = []
    for cell in cells:
        if cell.device == "cpu":
            torch.set_num_threads(cell.threads)
        runs = [nets[cell.net].runner(k, cell.mode, cell.threads, cell.batch, cell.device) for k in ("bn", "sepbn")]
        costs.append(sum(time_once(fn) for fn in runs for _ in range(2)) / 2 * 1.5)  # + runner setup, warm-up
    left = args.budget_min * 60 - (time.perf_counter() - start)
    print(f"setup took {time.perf_counter() - start:.0f} s; {left:.0f} s left for {len(cells)} cells; "
          f"one round of all cells ~{sum(costs):.0f} s", file=sys.stderr, flush=True)
    for i, (cell, cost) in enumerate(zip(cells, costs)):
        left = args.budget_min * 60 - (time.perf_counter() - start)
        share = left * cost / max(sum(costs[i:]), 1e-9)
        repeats = 1 if args.quick else max(args.min_repeats, min(args.max_repeats, int(share / cost) - 1))
        band = bandwidths["cuda"] if cell.device == "cuda" else bandwidths[
            f"cpu {cell.threads} thread{'s' if cell.threads > 1 else ''}"]
        measure(cell, nets[cell.net], repeats, band)
        print(f"  {cell.net} {cell.mode} {cell.device} t={cell.threads} b={cell.batch}: ratio {cell.ratio:.3f} "
              f"({repeats} repeats)", file=sys.stderr, flush=True)
    torch.set_num_threads(2)
    print(markdown(cells, info, bandwidths))
    print(f"\n(total wall time {time.perf_counter() - start:.0f} s; command: python benchmarks/deploy_overhead.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])})")
    if args.out:
        from sepbn.io import atomic_write_text

        payload = {"machine": info, "bandwidth_gbs": bandwidths, "size": size, "quick": args.quick,
                   "cells": [asdict(c) for c in cells], "wall_s": time.perf_counter() - start}
        atomic_write_text(Path(args.out), json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
