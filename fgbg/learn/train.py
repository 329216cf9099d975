"""Training with Lightning: store -> run folder with checkpoints, TensorBoard logs and a summary.

A run folder holds::

    run.json           the run's identity: model, train and loss config, stats, split, baseline, schedule
    best.ckpt          best by val mask IoU        last.ckpt   the latest epoch, or where Ctrl-C stopped it (--resume)
    tb/                TensorBoard logs (losses, metrics, learning rate, samples/s, an image grid per epoch)
    summary.json       best epoch, its metrics, time and samples/s

This module reads top to bottom: the config, the run's identity (:func:`make_meta`), then
:func:`train`, which wires data, model and Trainer together. The parts live beside it:
:mod:`~fgbg.learn.module` (the LightningModule: glue around model, losses and metrics),
:mod:`~fgbg.learn.callbacks`, :mod:`~fgbg.learn.budget` (``--max-minutes`` in steps) and
:mod:`~fgbg.learn.resume`.

Ctrl-C finishes the step in flight, saves ``last.ckpt`` there and raises :class:`TrainInterrupted`,
whose ``hint`` is the command that resumes; the resumed run continues exactly (the same batches,
weights and schedule as an uninterrupted one) and, with ``--max-minutes``, gets what is left of the
run's budget: the training seconds of every attempt are kept in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from fgbg.errors import ConfigError, UserError
from fgbg.learn import budget, metrics
from fgbg.learn.callbacks import (
    AtomicCheckpointIO, CtrlC, EndOfSchedule, FollowSchedule, Replan, StopRequested, Throughput, TrainClock,
    progress_callbacks, quiet_lightning,
)  # fmt: skip
from fgbg.learn.data import AugmentConfig, StoreDataset, load_stats, make_loader, read_entries, split_indices
from fgbg.learn.losses import LossConfig, MaskDepthLoss
from fgbg.learn.model import ModelConfig, TwoHeadUNet, count_macs, count_parameters
from fgbg.learn.module import FgbgModule
from fgbg.learn.resume import (
    Position, TrainInterrupted, interrupted_hint, leave_ctrl_c_to_trainer, resume_command, resume_loader_at, resume_meta,
)  # fmt: skip
from fgbg.store.layout import atomic_write_json, read_dataset_json

BEST, LAST = "best", "last"  # checkpoint names: best.ckpt, last.ckpt
MONITOR = "val/mask_iou"
BASELINE_SAMPLES = 256  # training samples used to choose the baseline threshold


class TrainError(UserError, ValueError):
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
            raise ConfigError("give --epochs, --max-minutes or both")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_minutes is not None and not 0 < self.max_minutes < math.inf:
            raise ConfigError(f"--max-minutes must be a positive number of minutes, got {self.max_minutes}")
        if self.size < 16 or self.batch < 1:
            raise ConfigError(f"--size must be at least 16 and --batch at least 1, got {self.size} and {self.batch}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {self.seed}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 (load in the training process) or more, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")


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
    sec = budget.seconds_per_sample(net, MaskDepthLoss(loss), config.size, min(config.batch, 16)) if config.epochs is None else 0.0
    total_steps = budget.plan_steps(config, steps_per_epoch, len(split.val), sec, load_seconds)
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
    budget.set_schedule(meta, total_steps)
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
    for loader in (train_loader, val_loader):
        loader.worker_init_fn = functools.partial(leave_ctrl_c_to_trainer, then=loader.worker_init_fn)
    return train_loader, val_loader


def train(
    store: Path,
    out: Path,
    config: TrainConfig = TrainConfig(),
    model: ModelConfig = ModelConfig(),
    loss: LossConfig = LossConfig(),
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    callbacks: list[Callback] | None = None,
) -> dict:
    """Train on ``store``, writing the run to ``out``; with ``resume``, continue ``out/last.ckpt`` exactly.

    ``progress``: None = Lightning's bar on a terminal and sparse log lines otherwise (see
    :class:`LogLines`); True = the bar; False = neither. Returns the summary (also written to
    ``out/summary.json``).

    Raises:
        TrainError: ``out`` holds a run and not ``resume``, or ``resume`` and nothing to resume.
        TrainInterrupted: Ctrl-C; its ``hint`` says where ``last.ckpt`` stands and how to resume.
    """
    store, out = Path(store), Path(out)
    last, command = out / f"{LAST}.ckpt", resume_command(store, out)
    if resume and not last.exists():
        raise TrainError(f"{out}: no {LAST}.ckpt to resume from; drop --resume to start a new run")
    if not resume and last.exists():
        raise TrainError(f"{out}: holds a run already; continue it with `{command}`, or choose another --out")
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    started = time.perf_counter()
    try:
        if resume:
            meta, at = resume_meta(last, config, log)
            if at.step >= meta["schedule"]["total_steps"]:
                return finished_summary(out, at, meta, log)
        else:
            out.mkdir(parents=True, exist_ok=True)
            meta, at = make_meta(store, config, model, loss, log), Position(0, 0, 0, 0.0)
        atomic_write_json(out / "run.json", meta)
        history, throughput, clock, trainer = fit(store, out, meta, at, resume, progress, log, command, callbacks or [])
    except TrainInterrupted:
        raise
    except KeyboardInterrupt:  # before the Trainer listens (planning, loading) or after it stopped listening
        raise TrainInterrupted(interrupted_hint(last, None, None, command)) from None
    summary = summarize(history, throughput, time.perf_counter() - started, clock.seconds, trainer, out)
    atomic_write_json(out / "summary.json", summary)
    log(format_summary(summary))
    return summary


def fit(store: Path, out: Path, meta: dict, at: Position, resume: bool, progress: bool | None, log: Callable[[str], None],
        command: str, callbacks: list[Callback]) -> tuple[list[dict], Throughput, TrainClock, L.Trainer]:  # fmt: skip
    """Build loaders, module and Trainer for a run's ``meta`` and fit from ``at``: (val history, throughput, clock, trainer).

    Raises:
        TrainInterrupted: Ctrl-C (see :class:`CtrlC`).
    """
    t, last = meta["train"], out / f"{LAST}.ckpt"
    train_loader, val_loader = make_loaders(store, meta)
    resume_loader_at(train_loader, at)
    L.seed_everything(t["seed"], workers=True, verbose=False)  # the initial weights (a resume loads its own)
    module = FgbgModule(meta)
    log(
        f"{meta['parameters'] / 1e6:.3f} M parameters, {meta['macs_per_sample'] / 1e9:.3f} GMACs per {t['size']}x{t['size']} sample;"
        f" {meta['split']['n_train']} train / {meta['split']['n_val']} val samples (held out by {t['val']}: {meta['split']['held_out']});"
        f" baseline threshold {meta['baseline']['threshold']:.2f}; stats: {meta['stats']['source']}"
    )
    budget_seconds = t["max_minutes"] * 60 if t["max_minutes"] else None
    throughput, clock = Throughput(), TrainClock(budget_seconds)
    replan = [Replan(clock, budget_seconds, out, log)] if budget_seconds and meta["schedule"]["sized_by"] == "budget" else []
    ctrl_c = CtrlC(last, lambda line: print(line, file=sys.stderr, flush=True))
    ours = [throughput, clock, EndOfSchedule(), FollowSchedule(), *replan, *progress_callbacks(progress), ctrl_c]
    with quiet_lightning(), warnings.catch_warnings(), ctrl_c.listening():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")  # SkipDone resumes it exactly
        trainer = make_trainer(out, meta, [*ours, *callbacks])
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None)
        except StopRequested:
            raise TrainInterrupted(interrupted_hint(last, ctrl_c.saved_step, meta, command)) from None
        except SystemExit:  # Lightning's answer to a KeyboardInterrupt (here: a second Ctrl-C)
            if not trainer.interrupted:
                raise
            raise TrainInterrupted(interrupted_hint(last, None, meta, command)) from None
    if ctrl_c.stopped:
        raise TrainInterrupted(interrupted_hint(last, ctrl_c.saved_step, meta, command))
    return module.history, throughput, clock, trainer


def finished_summary(out: Path, at: Position, meta: dict, log: Callable[[str], None]) -> dict:
    """A resume of a run that has taken every step of its schedule: nothing to train; its summary."""
    path = out / "summary.json"
    if not path.exists():
        raise TrainError(f"{out}: the run took all {at.step} steps but has no summary.json; evaluate {out / BEST}.ckpt, or start a new run")
    log(f"{out}: the run is complete ({at.step} of {meta['schedule']['total_steps']} steps); nothing to resume")
    return json.loads(path.read_text())


def make_trainer(out: Path, meta: dict, callbacks: list[Callback]) -> L.Trainer:
    """The Trainer of a run: TensorBoard logs, best.ckpt and last.ckpt written atomically, ``callbacks``."""
    # Two callbacks: Lightning 2.6 writes save_last only when the best also changed.
    best = ModelCheckpoint(dirpath=out, filename=BEST, monitor=MONITOR, mode="max", save_top_k=1, enable_version_counter=False)
    latest = ModelCheckpoint(dirpath=out, filename=LAST, save_top_k=1, enable_version_counter=False)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,  # the schedule's steps end the run (EndOfSchedule), also in the middle of an epoch
        logger=TensorBoardLogger(out, name="tb", version="", default_hp_metric=False),
        callbacks=[best, latest, LearningRateMonitor("step"), *callbacks],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=any(isinstance(c, TQDMProgressBar) for c in callbacks),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=min(10, meta["schedule"]["steps_per_epoch"]),
        default_root_dir=out,
    )


def summarize(history: list[dict], throughput: Throughput, seconds: float, train_seconds: float, trainer: L.Trainer, out: Path) -> dict:
    """The run's summary.json: best and last validation, steps, wall seconds of this attempt and
    training seconds of all attempts (what the budget counts), speed, where the checkpoints are."""
    best = max(history, key=lambda h: h["mask_iou"]) if history else {}
    return {
        "best_epoch": best.get("epoch"),
        "best": best,
        "last": history[-1] if history else {},
        "epochs_done": trainer.current_epoch,
        "global_step": trainer.global_step,
        "seconds": round(seconds, 1),
        "train_seconds": round(train_seconds, 1),
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
        f"best epoch {s['best_epoch']}: val {metrics.format_metrics(b)}\n"
        f"{s['epochs_done']} epochs, {s['global_step']} steps in {s['seconds'] / 60:.1f} min,"
        f" {s['train_samples_per_s']:.0f} training samples/s; checkpoints {s['best_ckpt']}, {s['last_ckpt']};"
        f" logs: {s['tensorboard']}"
    )
