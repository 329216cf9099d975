"""Train on a demo-sized store at 96 px on this machine's cores, and print what the issue asks for.

    python benchmarks/bench_train.py [--hold-out bg,fg] [--minutes 8] [--at 1,2,4] [--out bench-train/] [--workers 0]
    python benchmarks/bench_train.py --hold-out bg [--epochs 16 --minutes 40]
    python benchmarks/bench_train.py --accelerator gpu --size 224 [--batch 256] [--devices 1] [--precision bf16-mixed]

``--hold-out bg,fg`` (the default) measures generalisation: the last HELD_OUT_BGS backgrounds and
HELD_OUT_FGS foregrounds of the demo assets are never trained on; the network trains on the others
(validating during training on a random 5% of those samples) and is evaluated on a store of the
held-out bgs x held-out fgs composites only, beside the differencing baseline on the same images,
after --at minutes of training (the network as it stands, mid-schedule) and at the end. By default
the schedule is sized to an 8-minute budget (--epochs 0 --minutes 8). ``--hold-out bg`` is the
older measure: one store, the validation split holding out backgrounds only, evaluated on it.

Figures: wall time until val mask IoU >= 0.95 (goal < 10 min), final mask IoU (goal >= 0.97 and
above the differencing baseline), depth delta1 (goal >= 0.95) and RMSE (goal <= 0.05) on the
held-out backgrounds, training samples/s and loader samples/s (goal >= 2x training); and for
any accelerator the share of step time spent waiting for data (goal < 20%), peak GPU memory
(torch.cuda.max_memory_allocated) and peak RSS of the training process and of its loader workers,
and the steady training samples/s after --warmup-steps steps (a compiled network's first steps
compile it). On one H100 at 224 px the goal is >= 4,000 training samples/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from fgbg.config import GenerateConfig
from fgbg.learn.callbacks import synchronize
from fgbg.learn.data import AugmentConfig, StoreDataset, load_stats, make_loader, read_entries, split_indices
from fgbg.demo import demo_assets
from fgbg.learn.evaluate import METRIC_KEYS, evaluate, predict_dataset
from fgbg.learn.model import NormalizedNet
from fgbg.make.assets import IMAGE_SUFFIXES
from fgbg.make.generate import generate
from fgbg.learn.model import ModelConfig
from fgbg.learn.perturb import bg_aug_config
from fgbg.learn.train import TrainConfig, default_loader_workers, process_rank, train, training_devices

IOU_TARGET = 0.95
HELD_OUT_BGS, HELD_OUT_FGS = 2, 3  # the last ones of the demo assets by name (as benchmarks/gpu_check.py holds out)
HOLD_OUTS = ("bg,fg", "bg")


def held_out_assets(folder: Path, held: int) -> tuple[list[Path], list[Path]]:
    """(kept, held out) image files of an asset folder: the last ``held`` by name are held out."""
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    return files[:-held], files[-held:]


def copied(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / f.name)
    return folder


class HeldOutAt(Callback):
    """The network as it stands after ``marks`` minutes of training (since ``start``), on every sample of a
    held-out store: {minutes: metrics}. Each evaluation is in eval mode, in the training process, and its
    seconds count against the run's budget (a few seconds each at 96 px)."""

    def __init__(self, store: Path, marks: list[float], start: float) -> None:
        self.store, self.marks, self.start, self.results = store, sorted(marks), start, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        minutes = (time.perf_counter() - self.start) / 60
        if not self.marks or minutes < self.marks[0] or trainer.global_rank != 0:
            return
        mark = self.marks.pop(0)
        while self.marks and minutes >= self.marks[0]:
            self.marks.pop(0)
        self.results[mark] = held_out_metrics(pl_module, self.store)


def held_out_metrics(pl_module, store: Path) -> dict:
    """Mean per-image metrics of ``pl_module``'s network, as it is now, on every sample of ``store``."""
    meta = pl_module.meta
    net = NormalizedNet(pl_module.net, meta["stats"]["mean"], meta["stats"]["std"])
    was_training = net.training
    net.eval()
    dataset = StoreDataset(store, list(range(len(read_entries(store)))), meta["train"]["size"], load_stats(store), normalized=False)
    try:
        per_image = predict_dataset(net, dataset, meta["baseline"]["threshold"])
    finally:
        net.train(was_training)
        dataset.reader.close()
    return {k: per_image[k].double().mean().item() for k in METRIC_KEYS if k in per_image}


class TimeToTarget(Callback):
    """Wall time (since ``start``) at the end of the first validation with mask IoU >= IOU_TARGET."""

    def __init__(self, start: float) -> None:
        self.start, self.seconds, self.epoch = start, None, None

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module logged this epoch's metrics
        iou = trainer.callback_metrics.get("val/mask_iou")
        if self.seconds is None and iou is not None and float(iou) >= IOU_TARGET:
            self.seconds, self.epoch = time.perf_counter() - self.start, trainer.current_epoch


class DataWait(Callback):
    """Seconds the training loop waited for each batch (from one step's end to the next one's
    start: the loader's next(), and Lightning's copy to the device) against the whole step.

    A step ends when the device has done its work (synchronised: a GPU runs behind the Python that
    queues it, and without the wait its backward pass would count as waiting for data); the wait
    costs each step the overlap of queueing the next one, a few % of a GPU's samples/s. The first
    ``skip`` steps of the run (compilation, cuDNN's autotuning) are left out.
    """

    def __init__(self, skip: int = 0) -> None:
        self.wait = self.total = 0.0
        self.skip = skip
        self._end = self._start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = None  # an epoch's first batch waits for the workers to start: not a steady-state wait

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._end is not None and trainer.global_step > self.skip:
            self.wait += now - self._end
            self.total += now - self._start
        self._start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self._end = time.perf_counter()

    @property
    def share(self) -> float:
        return self.wait / self.total if self.total else 0.0


class SteadyRate(Callback):
    """Training samples/s over all ranks after the first ``skip`` steps of the run (compilation,
    cuDNN's autotuning, workers warming up): from a step's end to a later one's, each once the
    device is done; validation and each epoch's first step left out."""

    def __init__(self, skip: int) -> None:
        self.skip, self.samples, self.seconds = skip, 0, 0.0
        self._last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step < self.skip:
            return
        synchronize(pl_module.device)
        now = time.perf_counter()
        if self._last is not None:
            self.samples += int(batch["mask"].shape[0]) * trainer.world_size
            self.seconds += now - self._last
        self._last = now

    def on_validation_start(self, trainer, pl_module) -> None:
        self._last = None

    @property
    def rate(self) -> float | None:
        return self.samples / self.seconds if self.seconds else None


def peak_rss_mb() -> tuple[float, float]:
    """(this process, the largest of its finished children) peak resident memory in MB (Linux: KB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def batch_bytes(batch: dict) -> int:
    """Bytes of one collated batch's tensors (what each batch in flight holds in the loader's queues and pinned buffers)."""
    return sum(t.numel() * t.element_size() for t in _tensors(batch))


def _tensors(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
    elif torch.is_tensor(x):
        yield x


def loader_rate(store: Path, config: TrainConfig, batches: int = 60) -> tuple[float, tuple[int, int]]:
    """(samples/s, (bytes of one batch, bytes of its images in float32 as before)) of the training loader alone: decode, resize, draw each
    sample's augmentation, collate into compact batches; the float conversion, the augmentation and
    the normalisation run on the device after the copy (FgbgModule.on_after_batch_transfer), and are
    timed with the training steps."""
    split = split_indices(read_entries(store), config.val, config.val_fraction, config.seed)
    ds = StoreDataset(store, split.train, config.size, load_stats(store), AugmentConfig(), config.seed, bg_augment=bg_aug_config(config.bg_aug))
    devices = training_devices(config)
    workers = default_loader_workers(devices) if config.workers is None else config.workers
    loader = make_loader(ds, config.batch, True, workers, config.seed, drop_last=True, pin_memory=devices.on_gpu)
    it = iter(loader)
    first = next(it)  # also the worker start-up
    size = batch_bytes(first), 4 * sum(first[k].numel() for k in ("bg", "fg_bg", "mask", "depth"))
    t, n = time.perf_counter(), 0
    for _, batch in zip(range(batches), it):
        n += batch["mask"].shape[0]
    return n / (time.perf_counter() - t), size


def robustness_lines(rows: list[dict], bg_aug: str) -> list[str]:
    """The robustness report of the evaluation (``fgbg evaluate``'s, on the same images), with the issue's goals."""
    by = {r["bg"]: r for r in rows}
    above = all(r["mask_iou"] > r["baseline_mask_iou"] for r in rows)
    exposure = min(by["exposure x0.85"]["mask_iou"], by["exposure x1.15"]["mask_iou"])
    lines = [f"robustness (--bg-aug {bg_aug}): bg input | model mask IoU | differencing | model depth delta1"]
    lines += [f"  {r['bg']:<15} {r['mask_iou']:.4f}  {r['baseline_mask_iou']:.4f}  {r['depth_delta1']:.4f}" for r in rows]
    ok = lambda b: "yes" if b else "NO"  # noqa: E731
    lines += [
        f"  shift 2 px mask IoU {by['shift 2 px']['mask_iou']:.4f}  [goal >= 0.92: {ok(by['shift 2 px']['mask_iou'] >= 0.92)}]",
        f"  exposure x0.85/x1.15 mask IoU {exposure:.4f}  [goal >= 0.93: {ok(exposure >= 0.93)}]",
        f"  above differencing under every perturbation: {ok(above)}; aligned {by['aligned']['mask_iou']:.4f} (goal: within 0.5 points of a --bg-aug none run)",
    ]
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench-train"))
    p.add_argument("--hold-out", default="bg,fg", choices=HOLD_OUTS, help="bg,fg (default): evaluate on held-out bgs x held-out fgs only; bg: the validation split of one store")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of training (default 8)")
    p.add_argument("--epochs", type=int, default=0, help="a fixed schedule of this many epochs, capped at --minutes (default 0: sized to --minutes)")
    p.add_argument("--at", default="1,2,4", help="with --hold-out bg,fg: also evaluate the network as it stands after these minutes (default 1,2,4; the end is always)")
    p.add_argument("--placements", type=int, default=20, help="placements per (bg, fg, flip) (default 20, as the demo)")
    p.add_argument("--held-out-placements", type=int, default=10, help="placements per (bg, fg, flip) of the held-out store (default 10: 2 x 3 x 2 x 10 = 120 images)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16: measured better than 32 in a 10-minute budget)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--refine", type=int, default=ModelConfig.refine, help=f"channels of the full-resolution mask refinement (default {ModelConfig.refine}; 0: none)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: fgbg train's; 0 on 2 cores, where a worker steals a core from training)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--devices", default=None, help="GPUs (a count or indices) or CPU processes (default: auto)")
    p.add_argument("--precision", default=None, choices=["32", "bf16-mixed", "16-mixed"], help="default: bf16-mixed on a GPU, 32 on the CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--bg-aug", default="real", choices=["real", "none"], help="fgbg train's --bg-aug (default real: the bg input perturbed as a second photograph)")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps left out of the steady samples/s and the data wait (default 10)")
    args = p.parse_args()

    both = args.hold_out == "bg,fg"
    store, run, held_store = args.out / ("train-store" if both else "store"), args.out / "run", args.out / "held-out-store"
    # Lightning starts the other processes of a DDP run by running this script again (LOCAL_RANK set): they train, and
    # only that (rank 0 has made the store, and trains into run/). Under torchrun, whose ranks start together, make the store first
    rank = process_rank()
    bg_dir, fg_dir = demo_assets()
    gen = GenerateConfig(size=args.size, fg_size=args.size // 2, placements=args.placements)
    if both:  # the training store without the held-out assets; the held-out store of them alone
        (bgs, held_bgs), (fgs, held_fgs) = held_out_assets(bg_dir, HELD_OUT_BGS), held_out_assets(fg_dir, HELD_OUT_FGS)
        bg_dir, fg_dir = copied(bgs, args.out / "assets" / "bg"), copied(fgs, args.out / "assets" / "fg")
        held_dirs = copied(held_bgs, args.out / "assets" / "held-out-bg"), copied(held_fgs, args.out / "assets" / "held-out-fg")
    if rank == 0:
        print(generate(bg_dir, fg_dir, store, gen, progress=False))
        if both:
            print(generate(*held_dirs, held_store, dataclasses.replace(gen, placements=args.held_out_placements), progress=False))
        if run.exists():
            shutil.rmtree(run)
    split = dict(val="random", val_fraction=0.05) if both else {}  # with both held out, every other sample may train
    config = TrainConfig(size=args.size, epochs=args.epochs or None, max_minutes=args.minutes, batch=args.batch, lr=args.lr, workers=args.workers, threads=args.threads,
                         accelerator=args.accelerator, devices=args.devices, precision=args.precision, compile=args.compile, bg_aug=args.bg_aug, **split)  # fmt: skip
    devices = training_devices(config)
    workers = default_loader_workers(devices) if args.workers is None else args.workers
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    loader, (loader_batch_bytes, float_batch_bytes) = loader_rate(store, config) if rank == 0 else (0.0, (0, 0))

    start = time.perf_counter()
    target, waits, steady = TimeToTarget(start), DataWait(args.warmup_steps), SteadyRate(args.warmup_steps)
    marks = HeldOutAt(held_store, [float(x) for x in args.at.split(",") if x], start) if both else None
    summary = train(store, run, config, ModelConfig(width=args.width, refine=args.refine), progress=sys.stderr.isatty(),
                    callbacks=[target, waits, steady, *([marks] if marks else [])])  # fmt: skip
    if rank != 0:
        return 0
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if devices.on_gpu and devices.world_size == 1 else None
    rss, worker_rss = peak_rss_mb()
    device = "cuda" if devices.on_gpu else "cpu"
    m = evaluate(run / "best.ckpt", held_store if both else store, run / "eval", log=lambda _: None, device=device)
    curve = {**(marks.results if marks else {}), round(summary["seconds"] / 60, 2): m}
    train_rate = summary["train_samples_per_s"]

    def goal(ok: bool) -> str:
        return "yes" if ok else "NO"

    reached = f"{target.seconds / 60:.1f} min (epoch {target.epoch})" if target.seconds else f"not reached in {summary['seconds'] / 60:.1f} min"
    lines = [
        f"machine: {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end), torch {torch.__version__},"
        f" {config.threads or os.cpu_count()} training threads, {workers} loader workers",
        f"devices: {devices.world_size} x {devices.name} ({devices.accelerator}, {devices.precision}), batch {args.batch} per device",
        f"store: {gen.size} px, {len(read_entries(store))} samples; " + (
            f"evaluated on {m['n_images']} composites of {HELD_OUT_BGS} held-out bgs x {HELD_OUT_FGS} held-out fgs ({m['split']} of {held_store})"
            if both else f"val held out by bg: {m['n_images']} images"),
        f"time to val mask IoU >= {IOU_TARGET}: {reached}  [goal < 10 min: {goal(bool(target.seconds) and target.seconds < 600)}]",
        f"final mask IoU {m['mask_iou']:.4f} vs baseline {m['baseline_mask_iou']:.4f}  [goal >= 0.97 and above baseline: {goal(m['mask_iou'] >= 0.97 and m['mask_iou'] > m['baseline_mask_iou'])}]",
        f"mask Dice {m['mask_dice']:.4f}",
        f"depth delta1 {m['depth_delta1']:.4f}  [goal >= 0.95: {goal(m['depth_delta1'] >= 0.95)}]",
        f"depth RMSE {m['depth_rmse']:.4f}  [goal <= 0.05: {goal(m['depth_rmse'] <= 0.05)}]",
        f"depth AbsRel {m['depth_absrel']:.4f}, SSIM {m['depth_ssim']:.4f}",
        f"training {train_rate:.0f} samples/s; loader {loader:.0f} samples/s ({loader / max(train_rate, 1e-9):.1f}x)  [goal >= 2x: {goal(loader >= 2 * train_rate)}]",
        f"one collated batch of {args.batch} at {args.size} px: {loader_batch_bytes / 2**20:.2f} MiB (uint8 images and masks, depth as stored; float32: {float_batch_bytes / 2**20:.2f} MiB)",
        f"{summary['epochs_done']} epochs, {summary['global_step']} steps, {summary['seconds'] / 60:.1f} min in train()",
        f"samples/s {train_rate:.0f} at {args.size} px; waiting for data {100 * waits.share:.1f}% of step time  [goal < 20%: {goal(waits.share < 0.2)}]",
        f"steady samples/s (after {args.warmup_steps} steps) {steady.rate:.0f}" if steady.rate else f"steady samples/s: - (no step after the first {args.warmup_steps})",
        f"peak GPU memory {gpu_peak:.0f} MiB" if gpu_peak is not None else "peak GPU memory: - (not on one GPU)",
        f"peak RSS: training process {rss:.0f} MB, largest loader worker {worker_rss:.0f} MB",
    ]
    if both:
        lines += ["held-out bgs x held-out fgs, by minutes of training (the network as it stands; the last: the end, best.ckpt):"]
        lines += [f"  {t:5.2f} min: mask IoU {c['mask_iou']:.4f} (baseline {c['baseline_mask_iou']:.4f}, {100 * (c['mask_iou'] - c['baseline_mask_iou']):+.1f} points),"
                  f" depth delta1 {c['depth_delta1']:.4f}, RMSE {c['depth_rmse']:.4f}" for t, c in curve.items()]  # fmt: skip
    lines += robustness_lines(m["robustness"], args.bg_aug)
    print("\n".join(lines))
    figures = {"data_wait_share": waits.share, "peak_gpu_mib": gpu_peak, "peak_rss_mb": rss, "peak_worker_rss_mb": worker_rss,
               "steady_samples_per_s": steady.rate, "warmup_steps": args.warmup_steps, "device_name": devices.name, "precision": devices.precision}  # fmt: skip
    (args.out / "bench.json").write_text(json.dumps({"metrics": m, "summary": summary, "loader_samples_per_s": loader, "batch_bytes": loader_batch_bytes, "time_to_iou": target.seconds, "hold_out": args.hold_out,
                                                 "curve": {str(t): c for t, c in curve.items()}, **figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
