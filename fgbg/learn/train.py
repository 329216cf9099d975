"""Training with Lightning: store -> run folder with checkpoints, TensorBoard logs and a summary.

A run folder holds::

    run.json           the run's identity: model, train and loss config, stats, split, baseline, schedule
    best.ckpt          best by val mask IoU        last.ckpt   the latest epoch, or where Ctrl-C stopped it (--resume)
    tb/                TensorBoard logs (losses, metrics, learning rate, samples/s, an image grid per epoch)
    summary.json       best epoch, its metrics, time and samples/s

The order below reads top to bottom: config, the LightningModule (glue around model, losses
and metrics), callbacks, then :func:`train`, which wires data, model and Trainer together.

Ctrl-C finishes the step in flight, saves ``last.ckpt`` there and raises :class:`TrainInterrupted`,
whose ``hint`` is the command that resumes; the resumed run continues exactly (the same batches,
weights and schedule as an uninterrupted one) and, with ``--max-minutes``, gets what is left of the
run's budget: the training seconds of every attempt are kept in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shlex
import signal
import statistics
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import Sampler

from fgbg.errors import ConfigError, UserError
from fgbg.learn import metrics
from fgbg.learn.data import AugmentConfig, StoreDataset, denormalize, load_stats, make_loader, read_entries, split_indices
from fgbg.learn.losses import LossConfig, MaskDepthLoss
from fgbg.learn.model import ModelConfig, TwoHeadUNet, count_macs, count_parameters, read_checkpoint
from fgbg.learn.viz import image_grid, prediction_rows
from fgbg.progress import LOG_EVERY_FRACTION, LOG_EVERY_SECONDS, _clock, is_terminal
from fgbg.store.layout import atomic_file, atomic_write_json, read_dataset_json

BEST, LAST = "best", "last"  # checkpoint names: best.ckpt, last.ckpt
MONITOR = "val/mask_iou"
BASELINE_SAMPLES = 256  # training samples used to choose the baseline threshold
BUDGET_SHARE = 0.95  # with --max-minutes only: plan the schedule to end within this share of the budget
PCT_START = 0.15  # share of the one-cycle schedule spent warming up
LOG_MIN_SECONDS = 2.0  # progress lines in a log: never more often (tiny epochs would print every step)


class TrainError(UserError, ValueError):
    """A problem the user can fix (an occupied --out, nothing to resume, too small a store)."""


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training. ``hint`` is the one line to print: where it stopped and the exact
    command that resumes it (``fgbg train STORE --out RUN --resume``)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


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


class TrainClock(Callback):
    """Seconds spent training (validation included, start-up not) over every attempt of a run.

    Kept in the checkpoint, so the budget (--max-minutes) counts what earlier attempts trained;
    stops the run (after the step in flight and a last validation) once ``budget`` seconds are spent.
    Also keeps when the current epoch began, so the pace of an epoch split by Ctrl-C is still known.
    """

    def __init__(self, budget: float | None) -> None:
        self.budget, self.before, self._start = budget, 0.0, None
        self.epoch_start = (0.0, 0)  # (seconds, global step) when the previous epoch ended (0 for the first)

    @property
    def seconds(self) -> float:
        return self.before + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_when_spent(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # before the checkpoints: the next epoch pays for them
        self.epoch_start = (self.seconds, trainer.global_step)
        self._stop_when_spent(trainer)

    def _stop_when_spent(self, trainer) -> None:
        if self.budget is not None and self.seconds >= self.budget:
            trainer.should_stop = True

    def epoch_pace(self, step: int) -> float | None:
        """Seconds per step of the current epoch so far, with its validation and the previous epoch's
        checkpoint writes; None before its first step."""
        seconds, first = self.epoch_start
        return (self.seconds - seconds) / (step - first) if step > first else None

    def state_dict(self) -> dict:
        return {"seconds": self.seconds, "epoch_start": list(self.epoch_start)}

    def load_state_dict(self, state: dict) -> None:
        self.before, self.epoch_start = state["seconds"], tuple(state["epoch_start"])


def spent_seconds(checkpoint: dict) -> float:
    """The training seconds a checkpoint's run has spent (0 for checkpoints older than TrainClock)."""
    return float(checkpoint.get("callbacks", {}).get(TrainClock.__qualname__, {}).get("seconds", 0.0))


def steps_within_budget(done: int, total: int, spent: float, budget: float, pace: float, reserve: float = 0.0, least: int = 0) -> int:
    """The schedule length for a run that must end within ``budget`` seconds.

    ``done`` of ``total`` steps are taken in ``spent`` seconds; each further step costs ``pace``
    seconds and ``reserve`` more are needed at the end (the last validation). While the rest fits
    the whole budget the schedule stays as it is; otherwise it is cut to the steps that fit
    BUDGET_SHARE of it (``least`` more at the minimum), so that it still anneals fully instead of
    being stopped halfway by the budget.
    """
    if spent + (total - done) * pace + reserve <= budget:
        return total
    return min(total, done + max(least, math.floor((budget * BUDGET_SHARE - spent - reserve) / pace)))


def validation_seconds(meta: dict, step_seconds: float) -> float:
    """One validation's seconds: the last one measured, or before any, the plan's guess (a forward
    pass, a third of a training step, per sample)."""
    return meta["schedule"].get("val_seconds", step_seconds * meta["split"]["n_val"] / meta["train"]["batch"] / 3)


def reschedule(trainer: L.Trainer, meta: dict, total: int) -> None:
    """Give a running trainer a one-cycle schedule of ``total`` steps, positioned at its current step."""
    set_schedule(meta, total)
    config = trainer.lr_scheduler_configs[0]
    config.scheduler = one_cycle(config.scheduler.optimizer, meta["train"]["lr"], total, trainer.global_step)


class Replan(Callback):
    """Budget-sized runs: keep the schedule within the budget, in steps, so that it ends annealed.

    After the first epoch's validation (before its checkpoints), the plan made before training (a
    few steps timed on random inputs) is replaced by the measured pace of that epoch, with its
    loading, validation and logging: longer or shorter. At every step after that (and in epoch 0
    once a tenth of it is done), in this attempt or a resumed one, the schedule is cut when the
    pace of the current epoch, plus its validations, would overrun the budget: a busier machine,
    an epoch longer than the budget. The schedule then still ends fully annealed, where the budget
    alone would stop it halfway. The measured paces are kept in the run's meta (``schedule``).
    """

    def __init__(self, clock: TrainClock, budget: float, out: Path, log: Callable[[str], None]) -> None:
        self.clock, self.budget, self.out, self.report = clock, budget, out, log
        self._val_start = 0.0
        self._warm: tuple[float, int] | None = None  # (seconds, step) after this attempt's first step

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = self.clock.seconds

    def on_validation_end(self, trainer, pl_module) -> None:
        schedule, done = pl_module.meta["schedule"], trainer.global_step
        if trainer.sanity_checking:
            return
        schedule["val_seconds"] = self.clock.seconds - self._val_start
        pace = self.clock.epoch_pace(done)
        if "seconds_per_step" not in schedule and not trainer.should_stop and pace is not None:
            schedule["seconds_per_step"] = pace  # the measured pace replaces the plan, both ways
            self.resize(trainer, pl_module, max(done, math.floor(self.budget * BUDGET_SHARE / self.clock.seconds * done)), "after epoch 0")
        atomic_write_json(self.out / "run.json", pl_module.meta)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        meta, done = pl_module.meta, trainer.global_step
        if self._warm is None:  # an attempt's first step pays for warming up: not a pace to plan by
            self._warm = (self.clock.seconds, done)
        schedule, (since, first) = meta["schedule"], max(self.clock.epoch_start, self._warm, key=lambda mark: mark[1])
        if trainer.should_stop or done - first < max(3, schedule["steps_per_epoch"] // 10):
            return
        pace = (self.clock.seconds - since) / (done - first)  # training steps of this epoch, the last checkpoints' writes
        val = validation_seconds(meta, pace)
        total = steps_within_budget(done, schedule["total_steps"], self.clock.seconds, self.budget, pace + val / schedule["steps_per_epoch"], val)
        if total < schedule["total_steps"]:
            self.resize(trainer, pl_module, total, f"at step {done}")

    def resize(self, trainer, pl_module, total: int, when: str) -> None:
        schedule, done = pl_module.meta["schedule"], trainer.global_step
        if total == schedule["total_steps"]:
            return
        bar = trainer.progress_bar_callback
        (bar.print if bar is not None else self.report)(
            f"re-planned {when} ({self.clock.seconds:.1f} s of the {self.budget:.0f} s budget spent): {total} steps"
            f" ({total / schedule['steps_per_epoch']:.1f} epochs), was {schedule['total_steps']}"
        )
        reschedule(trainer, pl_module.meta, total)
        trainer.should_stop = trainer.should_stop or total <= done


class FollowSchedule(Callback):
    """A resumed run whose schedule was re-sized before it started: the restored one-cycle
    schedule (which has the old length) is replaced, at the step reached."""

    def on_train_start(self, trainer, pl_module) -> None:
        total = pl_module.meta["schedule"]["total_steps"]
        if trainer.lr_scheduler_configs[0].scheduler.total_steps != total:
            reschedule(trainer, pl_module.meta, total)


class StopRequested(Exception):
    """Raised inside the Trainer to end fit() at once, after last.ckpt is saved."""


class CtrlC(Callback):
    """The first Ctrl-C stops training cleanly; a second one stops at once.

    Training: the step in flight finishes, ``last.ckpt`` is saved at that step (exactly resumable:
    see :class:`SkipDone`), and fit() ends by :class:`StopRequested`. In validation (or on an
    epoch's last step), the epoch is finished first and fit() stops there (``stopped``), so the
    epoch's checkpoints are written as usual. A second Ctrl-C stops without saving (``last.ckpt``
    keeps the last checkpoint written). Only while :meth:`listening`.
    """

    def __init__(self, last: Path, say: Callable[[str], None]) -> None:
        self.last, self.say = last, say
        self.requested = False
        self.saved_step: int | None = None  # where last.ckpt was saved on Ctrl-C
        self.stopped = False  # fit() ended normally, at an epoch end, because of Ctrl-C
        self._told = False

    @contextmanager
    def listening(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        before = signal.signal(signal.SIGINT, self._on_signal)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, before)  # also undoes Lightning's SIG_IGN after a second Ctrl-C

    def _on_signal(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True  # nothing printed here: a signal handler must not write to a stream in use

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.requested or trainer.should_stop:  # a run ending anyway saves its own checkpoints
            return
        if batch_idx + 1 >= trainer.num_training_batches:  # validation and the epoch's checkpoints come next
            return self.on_validation_batch_end(trainer, pl_module, None, None, 0)
        trainer.save_checkpoint(self.last)
        self.saved_step = trainer.global_step
        raise StopRequested

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.requested and not self._told:
            self._told = True
            self.say("Ctrl-C: stopping after this epoch's validation and checkpoints (Ctrl-C again to stop now)")

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # before the checkpoints' (they run last)
        ending = trainer.should_stop or trainer.global_step >= pl_module.meta["schedule"]["total_steps"]
        if self.requested and not ending:
            trainer.should_stop, self.stopped, self.saved_step = True, True, trainer.global_step


class SkipDone(Sampler):
    """The train loader's sampler for a run resumed in mid-epoch: its first pass skips the
    ``skip`` samples the interrupted attempt already trained on, so the rest of the epoch gets the
    batches it would have had; later passes are whole. Length and epochs are the inner sampler's."""

    def __init__(self, inner: Sampler, skip: int) -> None:
        self.inner, self.skip = inner, skip

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        order, self.skip = list(self.inner)[self.skip :], 0
        return iter(order)


@dataclass(frozen=True)
class Position:
    """Where a checkpoint stands: optimizer steps taken, the epoch to continue and the batches of
    it already trained (0 when the checkpoint ended an epoch), training seconds spent."""

    step: int
    epoch: int
    batches: int
    seconds: float

    @classmethod
    def of(cls, checkpoint: dict, steps_per_epoch: int) -> "Position":
        step, epoch = int(checkpoint["global_step"]), int(checkpoint["epoch"])
        epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        if epochs and epochs["started"] == epochs["processed"]:  # Lightning goes on with a new epoch
            return cls(step, int(epochs["processed"]), 0, spent_seconds(checkpoint))
        into = step - epoch * steps_per_epoch  # saved in mid-epoch, as Ctrl-C does
        if into >= steps_per_epoch:  # a checkpoint without loop state, saved at the end of ``epoch``
            epoch, into = epoch + 1, 0
        return cls(step, epoch, into, spent_seconds(checkpoint))


def resume_loader_at(loader: torch.utils.data.DataLoader, position: Position) -> None:
    """Make ``loader``'s next pass the rest of ``position``'s epoch (its sampler shuffles by epoch)."""
    loader.sampler.set_epoch(position.epoch)  # before the first pass: worker processes fetch indices early
    if position.batches:
        loader.batch_sampler.sampler = SkipDone(loader.sampler, position.batches * loader.batch_size)


class LogLines(Callback):
    """Progress for a log (the bar's stream not a terminal), on stderr: a line at the first step,
    then every ~10% of an epoch (at most one per LOG_MIN_SECONDS) or LOG_EVERY_SECONDS, and at the last::

        epoch 2/10, step 130/400 (32%): loss 0.4123, 85 samples/s, val mask IoU 0.6123, 1:02 elapsed, ETA 2:11
    """

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self._t0 = self._last_t = 0.0
        self._step0 = self._last_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = self._last_t = time.monotonic()
        self._step0 = self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now, step, total = time.monotonic(), trainer.global_step, pl_module.meta["schedule"]["total_steps"]
        every = max(1, round(trainer.num_training_batches * LOG_EVERY_FRACTION))
        due = step - self._last_step >= every and now - self._last_t >= LOG_MIN_SECONDS
        if due or now - self._last_t >= LOG_EVERY_SECONDS or step >= total or step == self._step0 + 1:
            self._last_t, self._last_step = now, step
            print(self.line(trainer, pl_module, now), file=self.stream or sys.stderr, flush=True)

    def line(self, trainer, pl_module, now: float) -> str:
        schedule, step, got = pl_module.meta["schedule"], trainer.global_step, trainer.callback_metrics
        total, elapsed = schedule["total_steps"], now - self._t0
        per_step = elapsed / (step - self._step0) if step > self._step0 else 0.0
        parts = [f"epoch {trainer.current_epoch + 1}/{schedule['epochs']}, step {step}/{total} ({100 * step / total:.0f}%):"]
        if "train/loss_step" in got:
            parts.append(f"loss {float(got['train/loss_step']):.4f},")
        if "samples_per_s" in got:
            parts.append(f"{float(got['samples_per_s']):.0f} samples/s,")
        if pl_module.history:
            parts.append(f"val mask IoU {pl_module.history[-1]['mask_iou']:.4f},")
        parts.append(f"{_clock(elapsed)} elapsed, ETA {_clock(per_step * (total - step))}")
        return " ".join(parts)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written under a temporary name, fsynced and renamed: a kill or a second Ctrl-C
    mid-write leaves the previous last.ckpt, never half of one."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_file(Path(path)) as f:
            torch.save(checkpoint, f)


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
    return max(1, math.floor(config.max_minutes * 60 * BUDGET_SHARE / per_step))  # less than an epoch on a big store


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
    for loader in (train_loader, val_loader):
        loader.worker_init_fn = functools.partial(leave_ctrl_c_to_trainer, then=loader.worker_init_fn)
    return train_loader, val_loader


def leave_ctrl_c_to_trainer(worker_id: int, then: Callable[[int], None] | None = None) -> None:
    """A DataLoader worker's start: Ctrl-C (sent to the whole process group by a terminal) is left to
    the training process, which finishes its step and stops the workers; a worker that died of it
    would fail the batch being loaded instead. Then ``then``, the loader's own worker_init_fn."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if then is not None:
        then(worker_id)


def resume_command(store: Path, out: Path) -> str:
    """The command that continues the run in ``out``: its recorded configs need no other flag."""
    return shlex.join(["fgbg", "train", str(store), "--out", str(out), "--resume"])


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines (GPU available, tips, graceful shutdown) off; its warnings stay."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def progress_callbacks(progress: bool | None) -> list[Callback]:
    """True, or None on a terminal: Lightning's bar (drawn on stdout); None otherwise: LogLines; False: none."""
    if progress is False:
        return []
    if progress or is_terminal(sys.stdout):
        return [TQDMProgressBar(refresh_rate=5)]
    return [LogLines()]


def resume_meta(last: Path, config: TrainConfig, log: Callable[[str], None]) -> tuple[dict, Position]:
    """A run's meta and position from its last.ckpt; with a budget, the schedule fitted to what is left of it.

    ``config.max_minutes``, when given, is the run's new total budget; otherwise the recorded one holds.
    """
    checkpoint = read_checkpoint(last)
    meta = checkpoint["hyper_parameters"]["meta"]
    if config.max_minutes is not None:
        meta["train"]["max_minutes"] = config.max_minutes
    schedule, minutes = meta["schedule"], meta["train"]["max_minutes"]
    at = Position.of(checkpoint, schedule["steps_per_epoch"])
    budget = f" of the {minutes:g} min budget" if minutes else ""
    log(f"resuming {last} at step {at.step} of {schedule['total_steps']} (epoch {at.epoch + 1}), {at.seconds:.0f} s trained{budget}")
    if minutes and schedule["sized_by"] == "budget" and at.step and at.step < schedule["total_steps"]:
        pace = at.seconds / at.step  # all costs so far per step: validations, checkpoints, the interruption
        total = steps_within_budget(at.step, schedule["total_steps"], at.seconds, minutes * 60, pace, validation_seconds(meta, pace), least=1)
        if total != schedule["total_steps"]:
            log(f"re-planned for the {minutes * 60 - at.seconds:.0f} s left: {total} steps, was {schedule['total_steps']}")
            set_schedule(meta, total)
    return meta, at


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
    budget = t["max_minutes"] * 60 if t["max_minutes"] else None
    throughput, clock = Throughput(), TrainClock(budget)
    replan = [Replan(clock, budget, out, log)] if budget and meta["schedule"]["sized_by"] == "budget" else []
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


def interrupted_hint(last: Path, step: int | None, meta: dict | None, command: str) -> str:
    """One line: where Ctrl-C left the run (``step`` of the schedule, if known) and the command that resumes it."""
    if not last.exists():
        return "interrupted before the first checkpoint was written; nothing to resume: run the same command again"
    at = f"saved at step {step} of {meta['schedule']['total_steps']}" if step is not None and meta else "holds its last checkpoint"
    return f"interrupted; {last} {at}; resume with: {command}"


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
        f"best epoch {s['best_epoch']}: val mask IoU {b['mask_iou']:.4f} (baseline {b['baseline_mask_iou']:.4f}),"
        f" Dice {b['mask_dice']:.4f}; depth RMSE {b['depth_rmse']:.4f}, AbsRel {b['depth_absrel']:.4f},"
        f" delta1 {b['depth_delta1']:.4f}, SSIM {b['depth_ssim']:.4f}\n"
        f"{s['epochs_done']} epochs, {s['global_step']} steps in {s['seconds'] / 60:.1f} min,"
        f" {s['train_samples_per_s']:.0f} training samples/s; checkpoints {s['best_ckpt']}, {s['last_ckpt']};"
        f" logs: {s['tensorboard']}"
    )
