"""Train on a demo-sized store at 96 px on this machine's cores, and print what the issue asks for.

    python benchmarks/bench_train.py [--epochs 16] [--minutes 40] [--out bench-train/] [--workers 0]

By default a fixed 16-epoch one-cycle schedule (~23 min here), capped at 40 minutes; give
``--epochs 0 --minutes 10`` to let a 10-minute budget size the schedule instead.

Figures: wall time until val mask IoU >= 0.95 (goal < 10 min), final mask IoU (goal >= 0.97 and
above the differencing baseline), depth delta1 (goal >= 0.95) and RMSE (goal <= 0.05) on the
held-out backgrounds, training samples/s and loader samples/s (goal >= 2x training).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from fgbg.config import GenerateConfig
from fgbg.learn.data import AugmentConfig, StoreDataset, load_stats, make_loader, read_entries, split_indices
from fgbg.demo import demo_assets
from fgbg.learn.evaluate import evaluate
from fgbg.make.generate import generate
from fgbg.learn.model import ModelConfig
from fgbg.learn.train import TrainConfig, train

IOU_TARGET = 0.95


class TimeToTarget(Callback):
    """Wall time (since ``start``) at the end of the first validation with mask IoU >= IOU_TARGET."""

    def __init__(self, start: float) -> None:
        self.start, self.seconds, self.epoch = start, None, None

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module logged this epoch's metrics
        iou = trainer.callback_metrics.get("val/mask_iou")
        if self.seconds is None and iou is not None and float(iou) >= IOU_TARGET:
            self.seconds, self.epoch = time.perf_counter() - self.start, trainer.current_epoch


def loader_rate(store: Path, config: TrainConfig, batches: int = 60) -> float:
    """Samples/s of the training loader alone (decode, resize, augment, normalise, collate)."""
    split = split_indices(read_entries(store), config.val, config.val_fraction, config.seed)
    ds = StoreDataset(store, split.train, config.size, load_stats(store), AugmentConfig(), config.seed)
    loader = make_loader(ds, config.batch, True, config.workers, config.seed, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up
    t, n = time.perf_counter(), 0
    for _, batch in zip(range(batches), it):
        n += batch["mask"].shape[0]
    return n / (time.perf_counter() - t)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench-train"))
    p.add_argument("--minutes", type=float, default=40.0, help="wall-clock cap of training (default 40)")
    p.add_argument("--epochs", type=int, default=16, help="a fixed schedule of this many epochs (default 16; 0: sized to --minutes)")
    p.add_argument("--placements", type=int, default=20, help="placements per (bg, fg, flip) (default 20, as the demo)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16: measured better than 32 in a 10-minute budget)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--refine", type=int, default=ModelConfig.refine, help=f"channels of the full-resolution mask refinement (default {ModelConfig.refine}; 0: none)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0: on 2 cores a worker steals a core from training)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    store, run = args.out / "store", args.out / "run"
    bg_dir, fg_dir = demo_assets()
    gen = GenerateConfig(size=args.size, fg_size=args.size // 2, placements=args.placements)
    print(generate(bg_dir, fg_dir, store, gen, progress=False))
    if run.exists():
        shutil.rmtree(run)
    config = TrainConfig(size=args.size, epochs=args.epochs or None, max_minutes=args.minutes, batch=args.batch, lr=args.lr, workers=args.workers, threads=args.threads)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    loader = loader_rate(store, config)

    start = time.perf_counter()
    target = TimeToTarget(start)
    summary = train(store, run, config, ModelConfig(width=args.width, refine=args.refine), progress=sys.stderr.isatty(), callbacks=[target])
    m = evaluate(run / "best.ckpt", store, run / "eval", log=lambda _: None)
    train_rate = summary["train_samples_per_s"]

    def goal(ok: bool) -> str:
        return "yes" if ok else "NO"

    reached = f"{target.seconds / 60:.1f} min (epoch {target.epoch})" if target.seconds else f"not reached in {summary['seconds'] / 60:.1f} min"
    lines = [
        f"machine: {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end), torch {torch.__version__},"
        f" {config.threads or os.cpu_count()} training threads, {args.workers} loader workers",
        f"store: {gen.size} px, {len(read_entries(store))} samples; val held out by bg: {m['n_images']} images",
        f"time to val mask IoU >= {IOU_TARGET}: {reached}  [goal < 10 min: {goal(bool(target.seconds) and target.seconds < 600)}]",
        f"final mask IoU {m['mask_iou']:.4f} vs baseline {m['baseline_mask_iou']:.4f}  [goal >= 0.97 and above baseline: {goal(m['mask_iou'] >= 0.97 and m['mask_iou'] > m['baseline_mask_iou'])}]",
        f"mask Dice {m['mask_dice']:.4f}",
        f"depth delta1 {m['depth_delta1']:.4f}  [goal >= 0.95: {goal(m['depth_delta1'] >= 0.95)}]",
        f"depth RMSE {m['depth_rmse']:.4f}  [goal <= 0.05: {goal(m['depth_rmse'] <= 0.05)}]",
        f"depth AbsRel {m['depth_absrel']:.4f}, SSIM {m['depth_ssim']:.4f}",
        f"training {train_rate:.0f} samples/s; loader {loader:.0f} samples/s ({loader / max(train_rate, 1e-9):.1f}x)  [goal >= 2x: {goal(loader >= 2 * train_rate)}]",
        f"{summary['epochs_done']} epochs, {summary['global_step']} steps, {summary['seconds'] / 60:.1f} min in train()",
    ]
    print("\n".join(lines))
    (args.out / "bench.json").write_text(json.dumps({"metrics": m, "summary": summary, "loader_samples_per_s": loader, "time_to_iou": target.seconds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
