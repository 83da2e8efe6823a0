"""Training throughput (images/s) of VanillaCNN with BN vs SepBN: forward + L1 loss + backward + SGD step.

Random inputs, so only the network is measured (no data loading). Prints a table and the machine.

    python benchmarks/train_throughput.py                       # 128 px, width 1.0 and 0.25, batch 8 and 32
    python benchmarks/train_throughput.py --size 64 --width 0.25 --batch 32 --steps 10 --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch.nn.functional import l1_loss

from sepbn.models import create_model


def measure(norm: str, *, width: float, size: int, batch: int, steps: int, warmup: int, device: torch.device,
            amp: str, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = create_model("vanilla", ["wflw98"], norm=norm, width=width, input_size=size).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.rand(batch, 98, 2, device=device) * 2 - 1
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)["wflw98"]
        loss = l1_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs="+", default=[128])
    ap.add_argument("--width", type=float, nargs="+", default=[1.0, 0.25])
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    print(f"machine: {machine(device)}; torch {torch.__version__}; amp {args.amp}")
    print(f"{'size':>5}{'width':>7}{'batch':>7}{'BN img/s':>11}{'SepBN img/s':>13}{'SepBN/BN':>10}")
    for size in args.size:
        for width in args.width:
            for batch in args.batch:
                kw = dict(width=width, size=size, batch=batch, steps=args.steps, warmup=args.warmup, device=device,
                          amp=args.amp, channels_last=args.channels_last)
                bn, sep = measure("bn", **kw), measure("sepbn", **kw)
                rows.append({"size": size, "width": width, "batch": batch, "bn": bn, "sepbn": sep})
                print(f"{size:>5}{width:>7}{batch:>7}{bn:>11.1f}{sep:>13.1f}{sep / bn:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "torch": torch.__version__, "amp": args.amp, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
