"""Interrupting and resuming a run: Ctrl-C's exception and its one-line hint, where a checkpoint
stands, and the loader and schedule that continue it exactly.

A resumed run gets the same batches, weights and schedule as an uninterrupted one and, with
``--max-minutes``, what is left of the run's budget: the training seconds of every attempt are kept
in the checkpoint (by :class:`fgbg.learn.callbacks.TrainClock`).
"""

from __future__ import annotations

import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils.data import Sampler

from fgbg.learn.budget import set_schedule, steps_within_budget, validation_seconds
from fgbg.learn.callbacks import TrainClock
from fgbg.learn.model import read_checkpoint

if TYPE_CHECKING:
    from fgbg.learn.train import TrainConfig


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training. ``hint`` is the one line to print: where it stopped and the exact
    command that resumes it (``fgbg train STORE --out RUN --resume``)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


def spent_seconds(checkpoint: dict) -> float:
    """The training seconds a checkpoint's run has spent (0 for checkpoints older than TrainClock)."""
    return float(checkpoint.get("callbacks", {}).get(TrainClock.__qualname__, {}).get("seconds", 0.0))


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


def resume_loader_at(loader: torch.utils.data.DataLoader, position: Position) -> None:
    """Make ``loader``'s next pass the rest of ``position``'s epoch (its sampler shuffles by epoch)."""
    loader.sampler.set_epoch(position.epoch)  # before the first pass: worker processes fetch indices early
    if position.batches:
        loader.batch_sampler.sampler = SkipDone(loader.sampler, position.batches * loader.batch_size)


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


def resume_command(store: Path, out: Path) -> str:
    """The command that continues the run in ``out``: its recorded configs need no other flag."""
    return shlex.join(["fgbg", "train", str(store), "--out", str(out), "--resume"])


def interrupted_hint(last: Path, step: int | None, meta: dict | None, command: str) -> str:
    """One line: where Ctrl-C left the run (``step`` of the schedule, if known) and the command that resumes it."""
    if not last.exists():
        return "interrupted before the first checkpoint was written; nothing to resume: run the same command again"
    at = f"saved at step {step} of {meta['schedule']['total_steps']}" if step is not None and meta else "holds its last checkpoint"
    return f"interrupted; {last} {at}; resume with: {command}"


def leave_ctrl_c_to_trainer(worker_id: int, then: Callable[[int], None] | None = None) -> None:
    """A DataLoader worker's start: Ctrl-C (sent to the whole process group by a terminal) is left to
    the training process, which finishes its step and stops the workers; a worker that died of it
    would fail the batch being loaded instead. Then ``then``, the loader's own worker_init_fn."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if then is not None:
        then(worker_id)
