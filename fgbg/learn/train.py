"""Training with Lightning: store -> run folder with checkpoints, TensorBoard logs and a summary.

A run folder holds::

    run.json           the run's identity: model, train and loss config, stats, split, baseline, schedule
    best.ckpt          best by val mask IoU        last.ckpt   the latest epoch (for --resume)
    tb/                TensorBoard logs (losses, metrics, learning rate, samples/s, an image grid per epoch)
    summary.json       best epoch, its metrics, time and samples/s

The order below reads top to bottom: config, the LightningModule (glue around model, losses
and metrics), callbacks, then :func:`train`, which wires data, model and Trainer together.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from fgbg.learn import metrics
from fgbg.learn.data import AugmentConfig, StoreDataset, denormalize, load_stats, make_loader, read_entries, split_indices
from fgbg.learn.losses import LossConfig, MaskDepthLoss
from fgbg.learn.model import ModelConfig, TwoHeadUNet, count_macs, count_parameters
from fgbg.store.layout import atomic_write_json, read_dataset_json
from fgbg.learn.viz import image_grid, prediction_rows

BEST, LAST = "best", "last"  # checkpoint names: best.ckpt, last.ckpt
MONITOR = "val/mask_iou"
BASELINE_SAMPLES = 256  # training samples used to choose the baseline threshold
BUDGET_SHARE = 0.95  # with --max-minutes only: plan the schedule to end within this share of the budget
PCT_START = 0.15  # share of the one-cycle schedule spent warming up


class TrainError(ValueError):
    """A problem the user can fix (an occupied --out, nothing to resume, too small a store)."""


def default_loader_workers() -> int:
    """0 on 2 cores or fewer, else 1: on 2 cores a loader process takes CPU from the two training
    threads (demo, 64 px: 87-108 training samples/s with one, 150 loading in-process)."""
    return 0 if (os.cpu_count() or 1) <= 2 else 1


@dataclass(frozen=True)
class TrainConfig:
    size: int = 96  # training side in pixels; samples are resized to it on load
    epochs: int | None = 20  # schedule length; None with max_minutes: as many as fit the budget
    max_minutes: float | None = None  # wall-clock budget; training stops when it is spent
    batch: int = 32
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4
    val: str = "bg"  # hold out backgrounds ("bg"), foregrounds ("fg") or samples ("random")
    val_fraction: float = 0.2
    augment: bool = True  # paired colour jitter and flips on the training split
    seed: int = 0
    workers: int = dataclasses.field(default_factory=default_loader_workers)  # DataLoader processes (0: in this one)
    threads: int | None = None  # torch threads; None: one per core
    log_images: int = 8  # rows of the per-epoch image grid

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_minutes is None:
            raise ValueError("give --epochs, --max-minutes or both")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.size < 16 or self.batch < 1:
            raise ValueError(f"--size must be at least 16 and --batch at least 1, got {self.size} and {self.batch}")


# ---------------------------------------------------------------- the LightningModule


def to_input(batch: dict) -> torch.Tensor:
    """Normalised bg and fg_bg (B, 3, S, S) each -> (B, 6, S, S), channels_last."""
    return torch.cat([batch["bg"], batch["fg_bg"]], dim=1).contiguous(memory_format=torch.channels_last)


def image_metrics(pred, mask: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image metrics (B,) of a Prediction against gt mask {0, 1} and depth [0, 1] (B, 1, H, W)."""
    hard = metrics.binarize(pred.mask_logits)
    return {
        "mask_iou": metrics.mask_iou(hard, mask > 0.5),
        "mask_dice": metrics.mask_dice(hard, mask > 0.5),
        "depth_rmse": metrics.depth_rmse(pred.depth, depth),
        "depth_absrel": metrics.depth_absrel(pred.depth, depth),
        "depth_delta1": metrics.depth_delta1(pred.depth, depth),
        "depth_ssim": metrics.depth_ssim(pred.depth, depth),
    }


class FgbgModule(L.LightningModule):
    """Glue: TwoHeadUNet + MaskDepthLoss + metrics + AdamW with a one-cycle schedule.

    ``meta`` (saved as the only hyperparameter) holds every config, the stats, the split, the
    baseline threshold and the schedule: a checkpoint rebuilds the run by itself.
    """

    def __init__(self, meta: dict) -> None:
        super().__init__()
        self.save_hyperparameters({"meta": meta})
        self.meta = meta
        self.net = TwoHeadUNet(ModelConfig.from_dict(meta["model"])).to(memory_format=torch.channels_last)
        self.loss = MaskDepthLoss(LossConfig(**meta["loss"]))
        self.history: list[dict] = []  # one dict of val metrics per epoch
        self._val: dict[str, list[torch.Tensor]] = {}
        self._grid: list | None = None

    def forward(self, x: torch.Tensor):
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred = self.net(to_input(batch))
        losses = self.loss(pred, batch["mask"], batch["depth"])
        n = batch["mask"].shape[0]
        self.log("train/loss", losses.total, on_step=True, on_epoch=True, batch_size=n, prog_bar=True)
        self.log("train/mask_loss", losses.mask, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/depth_loss", losses.depth, on_step=False, on_epoch=True, batch_size=n)
        return losses.total

    def on_validation_epoch_start(self) -> None:
        self._val, self._grid = {}, None

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = self.net(to_input(batch))
        losses = self.loss(pred, batch["mask"], batch["depth"])
        values = image_metrics(pred, batch["mask"], batch["depth"])
        stats = self.meta["stats"]
        bg = denormalize(batch["bg"], stats["mean"][:3], stats["std"][:3])
        fg_bg = denormalize(batch["fg_bg"], stats["mean"][3:], stats["std"][3:])
        base = metrics.baseline_mask(bg, fg_bg, self.meta["baseline"]["threshold"])
        values["baseline_mask_iou"] = metrics.mask_iou(base, batch["mask"] > 0.5)
        values["loss"] = losses.total.expand(batch["mask"].shape[0])
        for k, v in values.items():
            self._val.setdefault(k, []).append(v.detach().cpu())
        if self._grid is None:
            k = self.meta["train"]["log_images"]
            self._grid = prediction_rows(
                bg[:k], fg_bg[:k], batch["mask"][:k], torch.sigmoid(pred.mask_logits[:k]), batch["depth"][:k], pred.depth[:k]
            )

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        means = {k: torch.cat(v).mean().item() for k, v in self._val.items()}
        for k, v in means.items():
            self.log(f"val/{k}", v, prog_bar=k == "mask_iou")
        self.history.append({"epoch": self.current_epoch, "step": self.global_step, **means})
        logger = self.logger
        if self._grid and logger is not None and hasattr(logger.experiment, "add_image"):
            logger.experiment.add_image("val/bg_fgbg_gtmask_predmask_gtdepth_preddepth", image_grid(self._grid), self.current_epoch)

    def configure_optimizers(self):
        t = self.meta["train"]
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
        schedule = one_cycle(optimizer, t["lr"], self.meta["schedule"]["total_steps"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("history", []))


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, total_steps: int, done: int = 0):
    """The one-cycle schedule over ``total_steps`` optimizer steps, positioned after ``done`` of them."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=PCT_START, last_epoch=done - 1)


# ---------------------------------------------------------------- callbacks


class Throughput(Callback):
    """Training samples/s (excluding validation): on the progress bar, in TensorBoard, in the summary."""

    def __init__(self) -> None:
        self.samples, self.seconds = 0, 0.0
        self._epoch_samples, self._epoch_seconds, self._t = 0, 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_samples, self._epoch_seconds = 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        dt, n = time.perf_counter() - self._t, int(batch["mask"].shape[0])
        self.samples, self.seconds = self.samples + n, self.seconds + dt
        self._epoch_samples, self._epoch_seconds = self._epoch_samples + n, self._epoch_seconds + dt
        rate = self._epoch_samples / max(self._epoch_seconds, 1e-9)
        pl_module.log("samples_per_s", rate, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class StopAfterEpochs(Callback):
    """Stop after ``n`` epochs of this run (the schedule still spans the configured epochs): simulates an interruption."""

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.done += 1
        if self.done >= self.n:
            trainer.should_stop = True


class EndOfSchedule(Callback):
    """Stop (after a last validation) when the schedule's steps are done, also in mid-epoch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= pl_module.meta["schedule"]["total_steps"]:
            trainer.should_stop = True


class Replan(Callback):
    """Budget-sized runs: after the first epoch (and its validation), fit the schedule to the time it took.

    The plan before training times a few steps on random inputs; the first real epoch also pays for
    loading, validation, logging and a machine that may be busier than it was. The schedule is
    re-sized in steps, so it still anneals fully and ends within BUDGET_SHARE of the budget.
    """

    def __init__(self, minutes: float, out: Path, log: Callable[[str], None]) -> None:
        self.seconds, self.out, self.report = minutes * 60 * BUDGET_SHARE, out, log
        self._start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:  # before the checkpoints are written
        if trainer.sanity_checking or trainer.should_stop or trainer.current_epoch != 0:
            return
        schedule, done = pl_module.meta["schedule"], trainer.global_step
        epoch_seconds = time.perf_counter() - self._start
        total = max(done, math.floor(self.seconds / epoch_seconds * done))
        if total == schedule["total_steps"]:
            return
        bar = trainer.progress_bar_callback
        (bar.print if bar is not None else self.report)(
            f"re-planned after epoch 0 ({epoch_seconds:.1f} s with validation): {total} steps"
            f" ({total / schedule['steps_per_epoch']:.1f} epochs), was {schedule['total_steps']}"
        )
        set_schedule(pl_module.meta, total)
        trainer.fit_loop.max_epochs = pl_module.meta["train"]["epochs"]
        config = trainer.lr_scheduler_configs[0]
        config.scheduler = one_cycle(config.scheduler.optimizer, pl_module.meta["train"]["lr"], total, done)
        atomic_write_json(self.out / "run.json", pl_module.meta)


# ---------------------------------------------------------------- the whole job


def seconds_per_sample(net: TwoHeadUNet, loss: MaskDepthLoss, size: int, batch: int, steps: int = 5) -> float:
    """Measured training time (forward + backward + step) per sample at ``size``, on random inputs:
    the median of ``steps`` steps after a warm-up (the minimum underestimated a 10-minute run by 15%)."""
    net = TwoHeadUNet(net.config).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters())
    x = torch.randn(batch, 6, size, size).contiguous(memory_format=torch.channels_last)
    target = (torch.rand(batch, 1, size, size) > 0.5).float()
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        l = loss(net(x), target, target).total
        opt.zero_grad()
        l.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) / batch


def plan_steps(config: TrainConfig, steps_per_epoch: int, n_val: int, step_seconds: float, load_seconds: float) -> int:
    """Optimizer steps of the schedule: the configured epochs, or (budget only) as many steps as fit
    BUDGET_SHARE of --max-minutes, validation once per epoch included.

    Per sample: a training step (validation: a forward, about a third), plus the decoding when the
    loader runs in the training process (--workers 0); in worker processes it overlaps the steps
    (:class:`Replan` corrects the plan from the first epoch when it does not).
    """
    if config.epochs is not None:
        return config.epochs * steps_per_epoch
    load = load_seconds if config.workers == 0 else 0.0
    per_step = config.batch * (step_seconds + load) + n_val * (step_seconds / 3 + load) / steps_per_epoch
    return max(steps_per_epoch, math.floor(config.max_minutes * 60 * BUDGET_SHARE / per_step))


def set_schedule(meta: dict, total_steps: int) -> None:
    """Record a schedule of ``total_steps`` in a run's meta (the last epoch may be partial)."""
    epochs = math.ceil(total_steps / meta["schedule"]["steps_per_epoch"])
    meta["schedule"].update(epochs=epochs, total_steps=total_steps)
    meta["train"]["epochs"] = epochs


def make_meta(store: Path, config: TrainConfig, model: ModelConfig, loss: LossConfig, log: Callable[[str], None]) -> dict:
    """Everything a run is: configs, stats, split, baseline threshold and schedule."""
    entries = read_entries(store)
    split = split_indices(entries, config.val, config.val_fraction, config.seed)
    if len(split.train) < 1 or len(split.val) < 1:
        raise TrainError(f"{store}: too few samples to hold out a validation split ({len(entries)})")
    stats = load_stats(store)
    plain = StoreDataset(store, split.train, config.size, stats, normalized=False)
    g = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(len(plain), generator=g)[:BASELINE_SAMPLES].tolist()
    started = time.perf_counter()
    batch = torch.utils.data.default_collate([plain[i] for i in chosen])
    load_seconds = (time.perf_counter() - started) / len(chosen)
    threshold = metrics.choose_baseline_threshold(batch["bg"], batch["fg_bg"], batch["mask"])
    plain.reader.close()
    steps_per_epoch = max(1, len(split.train) // config.batch)
    net = TwoHeadUNet(model)
    sec = seconds_per_sample(net, MaskDepthLoss(loss), config.size, min(config.batch, 16)) if config.epochs is None else 0.0
    total_steps = plan_steps(config, steps_per_epoch, len(split.val), sec, load_seconds)
    if config.epochs is None:
        log(
            f"budget {config.max_minutes:g} min at {1 / sec:.0f} samples/s measured (loading {1 / load_seconds:.0f}/s):"
            f" a schedule of {total_steps} steps ({total_steps / steps_per_epoch:.1f} epochs)"
        )
    meta_store = read_dataset_json(store)
    meta = {
        "store": str(Path(store).resolve()),
        "store_size": meta_store["config"]["size"],
        "model": model.to_dict(),
        "train": dataclasses.asdict(config),
        "loss": dataclasses.asdict(loss),
        "augment": dataclasses.asdict(AugmentConfig()) if config.augment else None,
        "stats": dataclasses.asdict(stats),
        "split": split.record(),
        "baseline": {"threshold": threshold, "chosen_on": f"{len(chosen)} training samples"},
        "schedule": {"kind": "one-cycle", "sized_by": "epochs" if config.epochs else "budget", "steps_per_epoch": steps_per_epoch},
        "parameters": count_parameters(net),
        "macs_per_sample": count_macs(net, config.size),
    }
    set_schedule(meta, total_steps)
    return meta


def make_loaders(store: Path, meta: dict):
    """(train loader, val loader) from a run's meta: split, size, stats and augmentation."""
    t = meta["train"]
    split = split_indices(read_entries(store), t["val"], t["val_fraction"], t["seed"])
    stats = load_stats(store)
    if stats.mean != meta["stats"]["mean"] or stats.std != meta["stats"]["std"]:
        raise TrainError(f"{store}: stats.json changed since this run started; start a new run")
    augment = AugmentConfig(**meta["augment"]) if meta["augment"] else None
    train_ds = StoreDataset(store, split.train, t["size"], stats, augment, t["seed"])
    val_ds = StoreDataset(store, split.val, t["size"], stats)
    train_loader = make_loader(train_ds, t["batch"], True, t["workers"], t["seed"], drop_last=len(train_ds) >= t["batch"])
    val_loader = make_loader(val_ds, max(t["batch"], 64), False, t["workers"], t["seed"])
    return train_loader, val_loader


def train(
    store: Path,
    out: Path,
    config: TrainConfig = TrainConfig(),
    model: ModelConfig = ModelConfig(),
    loss: LossConfig = LossConfig(),
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    callbacks: list[Callback] | None = None,
) -> dict:
    """Train on ``store``, writing the run to ``out``; with ``resume``, continue ``out/last.ckpt`` exactly.

    Returns the summary (also written to ``out/summary.json``).

    Raises:
        TrainError: ``out`` holds a run and not ``resume``, or ``resume`` and nothing to resume.
    """
    store, out = Path(store), Path(out)
    last = out / f"{LAST}.ckpt"
    if resume and not last.exists():
        raise TrainError(f"{out}: no {LAST}.ckpt to resume from; drop --resume to start a new run")
    if not resume and last.exists():
        raise TrainError(f"{out}: holds a run already; pass --resume to continue it, or choose another --out")
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    started = time.perf_counter()
    if resume:
        meta = torch.load(last, map_location="cpu", weights_only=False)["hyper_parameters"]["meta"]
        meta["train"]["max_minutes"] = config.max_minutes  # a new budget for this session
        log(f"resuming {last}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        meta = make_meta(store, config, model, loss, log)
        atomic_write_json(out / "run.json", meta)
    t = meta["train"]
    train_loader, val_loader = make_loaders(store, meta)
    L.seed_everything(t["seed"], workers=True, verbose=False)  # the initial weights (a resume loads its own)
    module = FgbgModule(meta)
    log(
        f"{meta['parameters'] / 1e6:.3f} M parameters, {meta['macs_per_sample'] / 1e9:.3f} GMACs per {t['size']}x{t['size']} sample;"
        f" {meta['split']['n_train']} train / {meta['split']['n_val']} val samples (held out by {t['val']}: {meta['split']['held_out']});"
        f" baseline threshold {meta['baseline']['threshold']:.2f}; stats: {meta['stats']['source']}"
    )
    throughput = Throughput()
    replan = [Replan(t["max_minutes"], out, log)] if not resume and meta["schedule"]["sized_by"] == "budget" else []
    # Two callbacks: Lightning 2.6 writes save_last only when the best also changed.
    best = ModelCheckpoint(dirpath=out, filename=BEST, monitor=MONITOR, mode="max", save_top_k=1, enable_version_counter=False)
    latest = ModelCheckpoint(dirpath=out, filename=LAST, save_top_k=1, enable_version_counter=False)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=t["epochs"],
        max_time=timedelta(minutes=t["max_minutes"]) if t["max_minutes"] else None,
        logger=TensorBoardLogger(out, name="tb", version="", default_hp_metric=False),
        callbacks=[best, latest, LearningRateMonitor("step"), throughput, EndOfSchedule(), *replan, *([TQDMProgressBar(refresh_rate=5)] if progress else []), *(callbacks or [])],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=min(10, meta["schedule"]["steps_per_epoch"]),
        default_root_dir=out,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None)
    summary = summarize(module.history, throughput, time.perf_counter() - started, trainer, out)
    atomic_write_json(out / "summary.json", summary)
    log(format_summary(summary))
    return summary


def summarize(history: list[dict], throughput: Throughput, seconds: float, trainer: L.Trainer, out: Path) -> dict:
    best = max(history, key=lambda h: h["mask_iou"]) if history else {}
    return {
        "best_epoch": best.get("epoch"),
        "best": best,
        "last": history[-1] if history else {},
        "epochs_done": trainer.current_epoch,
        "global_step": trainer.global_step,
        "seconds": round(seconds, 1),
        "train_samples_per_s": round(throughput.rate, 1),
        "best_ckpt": str(out / f"{BEST}.ckpt"),
        "last_ckpt": str(out / f"{LAST}.ckpt"),
        "tensorboard": f"tensorboard --logdir {out}",
    }


def format_summary(s: dict) -> str:
    b = s["best"]
    if not b:
        return f"no validation ran; {s['seconds']:.0f} s"
    return (
        f"best epoch {s['best_epoch']}: val mask IoU {b['mask_iou']:.4f} (baseline {b['baseline_mask_iou']:.4f}),"
        f" Dice {b['mask_dice']:.4f}; depth RMSE {b['depth_rmse']:.4f}, AbsRel {b['depth_absrel']:.4f},"
        f" delta1 {b['depth_delta1']:.4f}, SSIM {b['depth_ssim']:.4f}\n"
        f"{s['epochs_done']} epochs, {s['global_step']} steps in {s['seconds'] / 60:.1f} min,"
        f" {s['train_samples_per_s']:.0f} training samples/s; checkpoints {s['best_ckpt']}, {s['last_ckpt']};"
        f" logs: {s['tensorboard']}"
    )
