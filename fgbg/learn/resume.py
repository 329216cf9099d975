"""Interrupting and resuming a run: Ctrl-C's exception and its one-line hint, where a checkpoint
stands, and the loader and schedule that continue it exactly.

A resumed run gets the same batches, weights and schedule as an uninterrupted one and, with
``--max-minutes``, what is left of the run's budget: the training seconds of every attempt are kept
in the checkpoint (by :class:`fgbg.learn.callbacks.TrainClock`).

The device settings (accelerator, devices, nodes, strategy, precision, compile) are not part of
what a run is: a resume takes them from its own command line. After a change of the number of
processes the run continues at the saved optimizer step and at the same sample of the interrupted
epoch (:class:`fgbg.learn.callbacks.EpochPosition`). The batch per device stays, so each step from
then on trains ``batch x processes`` samples and an epoch has as many fewer (or more) steps; a
schedule sized by epochs re-counts its remaining steps so that the run trains as many samples as
planned (:func:`fgbg.learn.train.fit_to_devices`), and the one-cycle schedule is re-sized at the step
reached; a budget-sized one keeps its steps (a step takes about as long) and is re-planned from the
pace measured so far.
"""

from __future__ import annotations

import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from lightning.pytorch.callbacks import Callback

from fgbg.learn.budget import set_schedule, steps_within_budget, validation_seconds
from fgbg.learn.callbacks import EpochPosition, TrainClock
from fgbg.learn.model import read_checkpoint

if TYPE_CHECKING:
    from fgbg.learn.train_config import TrainConfig

DEVICE_FIELDS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "compile")  # a resume's own, not the run's


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
    """Where a checkpoint stands: optimizer steps taken, the epoch to continue and the samples of
    it already trained over all ranks (0 when the checkpoint ended an epoch), training seconds spent."""

    step: int
    epoch: int
    samples: int
    seconds: float

    @classmethod
    def of(cls, checkpoint: dict, steps_per_epoch: int, batch: int) -> "Position":
        """``steps_per_epoch`` and ``batch`` (global): only for checkpoints older than EpochPosition."""
        step, epoch = int(checkpoint["global_step"]), int(checkpoint["epoch"])
        epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        if epochs and epochs["started"] == epochs["processed"]:  # Lightning goes on with a new epoch
            return cls(step, int(epochs["processed"]), 0, spent_seconds(checkpoint))
        saved = checkpoint.get("callbacks", {}).get(EpochPosition.__qualname__)
        if saved is not None and saved["epoch"] == epoch:  # saved in mid-epoch, as Ctrl-C does
            return cls(step, epoch, int(saved["samples"]), spent_seconds(checkpoint))
        into = step - epoch * steps_per_epoch
        if into >= steps_per_epoch:  # a checkpoint without loop state, saved at the end of ``epoch``
            epoch, into = epoch + 1, 0
        return cls(step, epoch, into * batch, spent_seconds(checkpoint))


def resume_loader_at(loader: torch.utils.data.DataLoader, position: Position) -> None:
    """Make ``loader``'s next pass the rest of ``position``'s epoch (its EpochSampler shuffles by epoch)."""
    loader.sampler.set_epoch(position.epoch)  # before the first pass: worker processes fetch indices early
    loader.sampler.skip_once(position.samples)


class BatchesDoneIn(Callback):
    """A run resumed in mid-epoch on another number of ranks (or another batch): Lightning restores the
    epoch's count of batches in the saving attempt's batches and ends the epoch when that count reaches
    this attempt's batches per epoch, so on more ranks it would end the epoch early, samples untrained.
    The count is rewritten in this attempt's batches: those of a whole pass less those left in the rest
    of the epoch that the loader's EpochSampler now yields (:func:`resume_loader_at`)."""

    def __init__(self, loader: torch.utils.data.DataLoader, position: Position) -> None:
        self.loader, self.position = loader, position

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if progress is None:
            return
        current = progress["current"]
        shift = batches_done(self.loader, self.position.samples) - current["ready"]
        for name in ("ready", "started", "processed", "completed"):  # their differences say where in the step it saved
            current[name] += shift


def batches_done(loader: torch.utils.data.DataLoader, samples: int) -> int:
    """This rank's batches of an epoch counted as done when ``samples`` of it (over all ranks) are trained:
    ``len(loader)`` less the batches the rest of the epoch makes on this rank (EpochSampler's split)."""
    sampler = loader.sampler
    rank, world = sampler.ranks()
    rest = sampler.n - samples
    rest = rest // world * world if sampler.even else rest
    mine = len(range(rank, rest, world))
    left = mine // loader.batch_size if loader.drop_last else -(-mine // loader.batch_size)
    return len(loader) - left


def resumed_in_mid_epoch(loader: torch.utils.data.DataLoader, position: Position) -> list[Callback]:
    """The callback that recounts a mid-epoch position in this attempt's batches (none at an epoch's start)."""
    return [BatchesDoneIn(loader, position)] if position.samples else []


def resume_meta(last: Path, config: TrainConfig, log: Callable[[str], None]) -> tuple[dict, Position]:
    """A run's meta and position from its last.ckpt; with a budget, the schedule fitted to what is left of it.

    ``config.max_minutes``, when given, is the run's new total budget; otherwise the recorded one holds.
    """
    checkpoint = read_checkpoint(last)
    meta = checkpoint["hyper_parameters"]["meta"]
    if config.max_minutes is not None:
        meta["train"]["max_minutes"] = config.max_minutes
    meta["train"].update({name: getattr(config, name) for name in DEVICE_FIELDS})
    schedule, minutes = meta["schedule"], meta["train"]["max_minutes"]
    at = Position.of(checkpoint, schedule["steps_per_epoch"], schedule.get("global_batch", meta["train"]["batch"]))
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
