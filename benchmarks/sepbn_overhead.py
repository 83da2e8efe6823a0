"""Cost of SepBN over BatchNorm2d in the paper's Vanilla CNN (Table I; issue 2 section 5).

Train-step time, inference time and peak memory of VanillaCNN (batch 8, 128x128) with BatchNorm2d vs
SepBatchNorm2d (K=3, G=2, T=3) in every block, eager and under torch.compile. Variants are run
interleaved (one step of each in turn) and the median is reported, so background load hits every variant
alike; the printed ratios are SepBN / BN medians.

    python benchmarks/sepbn_overhead.py                      # eager + compiled, 15 timed steps each
    python benchmarks/sepbn_overhead.py --modes eager --profile   # + torch.profiler tables of one train step
    python benchmarks/sepbn_overhead.py --width 0.25 --steps 5    # quick look

Variants: ``bn`` (BatchNorm2d), ``sepbn`` (the layer as shipped: folded normalisation + mixed affine in
one pass, analytic backward, sparse max-pool gradient) and ``sepbn-naive`` (the same layer with the
plain autograd path: what a straightforward implementation costs). ``mixture`` adds the authors'
public-code variant.

Memory: on CUDA, torch.cuda.max_memory_allocated over one train step; on CPU (no allocator statistics),
the bytes of distinct tensors autograd saves for backward in one train step (the activation memory that
dominates a training peak), measured with saved_tensors_hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from sepbn.nn import MixtureBatchNorm2d, SepBatchNorm2d
from sepbn.nn import attention as sep_attention
from sepbn.nn import functional as sep_functional

TABLE_I_CHANNELS = (64, 128, 256, 512, 1024, 2048)


def vanilla_cnn(norm_layer: Callable[[int], nn.Module], width: float, size: int, points: int = 98) -> nn.Module:
    """sepbn.models.VanillaCNN when present, else the same Table I stack built here."""
    try:
        from sepbn.models.vanilla_cnn import VanillaCNN

        return VanillaCNN(points, norm_layer, width=width, input_size=size)
    except ImportError:
        layers: list[nn.Module] = []
        cin = 3
        for c in TABLE_I_CHANNELS:
            cout = max(1, round(c * width))
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm_layer(cout), nn.LeakyReLU(0.01),
                       nn.MaxPool2d(2)]
            cin = cout
        side = size // 64
        hidden = max(1, round(1024 * width))
        layers += [nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.LeakyReLU(0.01),
                   nn.Linear(hidden, 2 * points)]
        return nn.Sequential(*layers)


@contextlib.contextmanager
def naive_path() -> Iterator[None]:
    """Disable the fused backward and the sparse pool gradient (plain autograd ops) inside the block."""
    fused, pool = sep_functional._use_fused, sep_attention.adaptive_max_pool
    sep_functional._use_fused = lambda *tensors: False
    sep_attention.adaptive_max_pool = lambda x, size: nn.functional.adaptive_max_pool2d(x, size)
    try:
        yield
    finally:
        sep_functional._use_fused, sep_attention.adaptive_max_pool = fused, pool


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "sepbn": SepBatchNorm2d,
    "sepbn-naive": SepBatchNorm2d,
    "mixture": MixtureBatchNorm2d,
}


class Runner:
    """One variant: model, optimiser, fixed inputs; ``train_step`` and ``infer`` return seconds."""

    def __init__(self, name: str, args: argparse.Namespace, compiled: bool) -> None:
        torch.manual_seed(0)
        self.name, self.device = name, torch.device(args.device)
        model = vanilla_cnn(NORMS[name], args.width, args.size).to(self.device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.run = torch.compile(model) if compiled else model
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        self.x = torch.randn(args.batch, 3, args.size, args.size, device=self.device)
        if args.channels_last:
            self.x = self.x.to(memory_format=torch.channels_last)
        self.target = torch.randn(args.batch, 2 * 98, device=self.device)

    def context(self) -> contextlib.AbstractContextManager:
        return naive_path() if self.name == "sepbn-naive" else contextlib.nullcontext()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(self) -> float:
        self.model.train()
        with self.context():
            self._sync()
            start = time.perf_counter()
            loss = nn.functional.l1_loss(self.run(self.x), self.target)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self._sync()
        return time.perf_counter() - start

    def infer(self) -> float:
        self.model.eval()
        with self.context(), torch.inference_mode():
            self._sync()
            start = time.perf_counter()
            self.run(self.x)
            self._sync()
        return time.perf_counter() - start

    def peak_memory(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.train_step()
            return torch.cuda.max_memory_allocated()
        seen: dict[tuple, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = (t.untyped_storage().data_ptr(), t.dtype)
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self.train_step()
        return sum(seen.values())


def interleaved(runners: list[Runner], what: str, steps: int) -> dict[str, float]:
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(steps):
        for r in runners:
            times[r.name].append(getattr(r, what)())
    return {name: statistics.median(v) for name, v in times.items()}


def profile(runner: Runner, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if runner.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        runner.train_step()
    key = "self_cuda_time_total" if runner.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["bn", "sepbn", "sepbn-naive"], choices=sorted(NORMS))
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = Table I)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave default)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of one eager train step")
    parser.add_argument("--profile-rows", type=int, default=15)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = f"CPU, {torch.get_num_threads()} threads"
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu
    print(f"VanillaCNN width={args.width} batch={args.batch} {args.size}x{args.size} on {device_name}; "
          f"torch {torch.__version__}; medians of {args.steps} interleaved steps")
    base = args.variants[0]
    for mode in args.modes:
        runners = [Runner(name, args, compiled=(mode == "compiled")) for name in args.variants]
        start = time.perf_counter()
        for what in ("train_step", "infer"):
            interleaved(runners, what, args.warmup)
        warm = time.perf_counter() - start
        train = interleaved(runners, "train_step", args.steps)
        infer = interleaved(runners, "infer", args.steps)
        memory = {r.name: r.peak_memory() for r in runners}
        print(f"\n[{mode}] (warm-up incl. compilation {warm:.0f} s)")
        print(f"{'variant':<12} {'train ms':>9} {'ratio':>6} {'infer ms':>9} {'ratio':>6} "
              f"{'memory MB':>10} {'ratio':>6}")
        for name in args.variants:
            print(f"{name:<12} {train[name] * 1e3:9.1f} {train[name] / train[base]:6.3f} "
                  f"{infer[name] * 1e3:9.1f} {infer[name] / infer[base]:6.3f} "
                  f"{memory[name] / 2**20:10.1f} {memory[name] / memory[base]:6.3f}")
        if args.profile and mode == "eager":
            for r in runners:
                print(f"\n--- profile: one {mode} train step, {r.name} ---")
                print(profile(r, args.profile_rows))
        del runners


if __name__ == "__main__":
    main()
