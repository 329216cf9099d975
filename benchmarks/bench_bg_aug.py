"""What the bg perturbation of training (``fgbg train --bg-aug real``) costs: training samples/s with
and without it, in the same process, on the same batches.

    python benchmarks/bench_bg_aug.py [--size 96] [--batch 16] [--steps 60] [--device cpu|cuda]

Each step is what ``fgbg train`` does on 2 cores (the loader in the training process): read and
decode a batch (with ``real``: draw each sample's perturbation, JPEG re-encode the bg of a third of
them), collate, make floats and augment (``prepare_batch``: with ``real`` the batched perturbation),
forward, backward, AdamW step. The two settings alternate step by step on the same samples, so a
machine whose load changes slows both alike; the figures are each setting's median step (a busy
machine's slow steps left out). Goal: ``real`` costs < 10% of samples/s.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.learn.data import AugmentConfig, StoreDataset, prepare_batch
from fgbg.learn.losses import LossConfig, MaskDepthLoss
from fgbg.learn.model import ModelConfig, TwoHeadUNet
from fgbg.learn.module import to_input
from fgbg.learn.perturb import BgAugConfig
from fgbg.make.generate import generate


def timed_step(ds: StoreDataset, net, loss, optimizer, positions: list[int], device: torch.device) -> tuple[float, float]:
    """(seconds of one training step on the samples at ``positions``, of which making the float batch on the device)."""
    t0 = time.perf_counter()
    compact = torch.utils.data.default_collate([ds[(p, 0)] for p in positions])
    compact = {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device)) for k, v in compact.items()}
    t1 = time.perf_counter()
    b = prepare_batch(compact, ds.stats)
    t2 = time.perf_counter()
    pred = net(to_input(b))
    losses = loss(pred, b["mask"], b["depth"])
    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, t2 - t1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-bg-aug"))
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=60, help="steps of each setting")
    p.add_argument("--warmup", type=int, default=3, help="steps of each left out first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    store = args.out / "store"
    if not (store / "dataset.json").exists():
        generate(*demo_assets(), store, GenerateConfig(size=args.size, fg_size=args.size // 2, placements=4), progress=False)
    settings = {"none": None, "real": BgAugConfig()}
    datasets = {name: StoreDataset(store, None, args.size, None, AugmentConfig(), 0, bg_augment=cfg) for name, cfg in settings.items()}
    torch.manual_seed(0)
    net = TwoHeadUNet(ModelConfig()).to(device).to(memory_format=torch.channels_last)
    loss, optimizer = MaskDepthLoss(LossConfig()), torch.optim.AdamW(net.parameters(), lr=1e-3)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in settings}
    for step in range(args.warmup + args.steps):
        positions = [(step * args.batch + i) % len(datasets["none"]) for i in range(args.batch)]
        for name in (("none", "real") if step % 2 else ("real", "none")):  # each first in turn
            seconds = timed_step(datasets[name], net, loss, optimizer, positions, device)
            if step >= args.warmup:  # the first: the bg cache, the allocator
                times[name].append(seconds)
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}  # (step, float batch) of the median step
    rate = {name: args.batch / step for name, (step, _) in median.items()}
    for name, (step, prepare) in median.items():
        print(f"bg-aug {name}: {rate[name]:.1f} training samples/s (median step of {args.batch}: {1e3 * step:.1f} ms, "
              f"{1e3 * prepare:.1f} ms of it making the float batch) at {args.size} px on {device}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"cost of --bg-aug real: {100 * (1 - rate['real'] / rate['none']):.1f}% of training samples/s (goal < 10%); {args.steps} steps each; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
