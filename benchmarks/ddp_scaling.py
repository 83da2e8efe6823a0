"""DDP scaling on CPU: training images/s of a small VanillaCNN with 1 process vs N processes (gloo).

Each process trains on random inputs (no data loading): forward + L1 loss + backward (DDP's
gradient all-reduce) + SGD step, the model wrapped as ``sepbn train`` wraps a one-protocol network
(``DistributedDataParallel``; in the sync-BN rows its BN statistics synchronised by
``sepbn.nn.sync_bn.convert_sync_batchnorm``). Weak scaling: every process keeps the per-process batch, so N
processes train on an N-times larger effective batch; images/s counts all processes' images.
Rows, for BN and SepBN: 1 process with 1 thread, 1 process with N threads (as many cores as the
N-process run), N processes with 1 thread each; SepBN also with ``dist.sync_bn``. The last column
is the speed-up over 1 process with 1 thread (ideal weak scaling on N free cores: N).

    python benchmarks/ddp_scaling.py                      # 2 processes, 64 px, width 0.25, batch 16
    python benchmarks/ddp_scaling.py --procs 2 --size 128 --width 0.25 --batch 8 --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch.nn.functional import l1_loss
from torch.nn.parallel import DistributedDataParallel

from sepbn.models import create_model
from sepbn.nn.sync_bn import convert_sync_batchnorm


def _worker(rank: int, world: int, port: int, args: dict, threads: int, norm: str, sync_bn: bool,
            result: "mp.Queue") -> None:
    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    torch.manual_seed(rank)
    size, batch = args["size"], args["batch"]
    model = create_model("vanilla", ["wflw98"], norm=norm, width=args["width"], input_size=size).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    if world > 1 and sync_bn:
        convert_sync_batchnorm(model)
    net = DistributedDataParallel(model) if world > 1 else model  # one head: every parameter is used
    x = torch.randn(batch, 3, size, size)
    y = torch.rand(batch, 98, 2) * 2 - 1

    def step() -> None:
        loss = l1_loss(net(x)["wflw98"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args["warmup"]):
        step()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args["steps"]):
        step()
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        result.put(args["steps"] * batch * world / elapsed)
    if world > 1:
        dist.destroy_process_group()


def measure(world: int, threads: int, norm: str, sync_bn: bool, args: dict) -> float:
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_worker, args=(r, world, port, args, threads, norm, sync_bn, result))
             for r in range(world)]
    for p in procs:
        p.start()
    value = result.get(timeout=1800)
    for p in procs:
        p.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=16, help="per process")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None)
    a = parser.parse_args()
    args = {"size": a.size, "width": a.width, "batch": a.batch, "steps": a.steps, "warmup": a.warmup}
    n = a.procs
    rows = [(norm, world, threads, False) for norm in ("bn", "sepbn") for world, threads in ((1, 1), (1, n), (n, 1))]
    rows.append(("sepbn", n, 1, True))
    print(f"# VanillaCNN width {a.width}, {a.size} px, batch {a.batch} per process, {a.steps} timed steps; "
          f"{platform.machine()} {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print("| norm | processes x threads | sync BN | images/s | vs 1 process x 1 thread |")
    print("| --- | --- | --- | ---: | ---: |")
    out, base = [], {}
    for norm, world, threads, sync in rows:
        ips = measure(world, threads, norm, sync, args)
        if world == 1 and threads == 1:
            base[norm] = ips
        ratio = f"{ips / base[norm]:.2f}x" if norm in base else ""
        print(f"| {norm} | {world} x {threads} | {'yes' if sync else 'no'} | {ips:.1f} | {ratio} |", flush=True)
        out.append({"norm": norm, "processes": world, "threads": threads, "sync_bn": sync, "images_per_s": ips})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": args, "rows": out}, f, indent=2)


if __name__ == "__main__":
    main()
