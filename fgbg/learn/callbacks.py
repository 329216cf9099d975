"""The Lightning callbacks of a run: speed, the training clock and the budget, the end of the
schedule, Ctrl-C, progress lines for a log, and checkpoints written atomically.

Under DDP every rank runs these callbacks; a decision that depends on a clock or a signal
(stop for the budget, Ctrl-C, re-plan the schedule) is agreed between the ranks every few steps
(:func:`agreeing`: at step 1 and every ``log_every_n_steps`` after it) by one all-reduce of a
small tensor (:func:`any_rank` for a flag, :func:`rank_zero_number` for rank 0's number), so
all ranks stop, or change their schedule, at the same step, and no step pays for a pickled
broadcast. Files are written by rank 0 only (checkpoints: Lightning; run.json and progress lines: here).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from fgbg.learn.budget import reschedule, steps_at_pace, steps_for_budget, steps_within_budget, validation_seconds
from fgbg.progress import LOG_EVERY_FRACTION, LOG_EVERY_SECONDS, _clock, is_terminal
from fgbg.store.layout import atomic_file, atomic_write_json

LOG_MIN_SECONDS = 2.0  # progress lines in a log: never more often (tiny epochs would print every step)
TRACE_ENV = "FGBG_TRACE"  # debugging: a folder where each rank logs the samples it trains on and the checkpoints it writes


def now() -> float:
    """The training clock's reading in seconds (a ``time.perf_counter``; a test scripts a pace by replacing it)."""
    return time.perf_counter()


def trace(line: dict, rank: int) -> None:
    """With FGBG_TRACE=DIR in the environment: append ``line`` as JSON to DIR/rank{rank}.jsonl (else nothing)."""
    folder = os.environ.get(TRACE_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / f"rank{rank}.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


def agreed(trainer, value):
    """Rank 0's ``value`` on every rank (a broadcast of the pickled object under DDP; ``value`` itself in
    one process): for a run's meta, once. Every rank must call it at the same point, whatever its own value."""
    return trainer.strategy.broadcast(value, src=0) if trainer.world_size > 1 else value


def agreeing(trainer) -> bool:
    """Whether the ranks agree on their clocks and signals after this step: every step in one process
    (nothing to exchange); under DDP at step 1 (a start-up may have spent the budget) and every
    ``trainer.log_every_n_steps`` steps after it, the same steps on every rank."""
    return trainer.world_size == 1 or (trainer.global_step - 1) % max(1, trainer.log_every_n_steps) == 0


def all_reduced(trainer, values: list[float], op) -> list[float]:
    """``values`` reduced by ``op`` over the ranks: one all-reduce of a float64 tensor on this rank's device."""
    t = torch.tensor(values, dtype=torch.float64, device=trainer.strategy.root_device)
    torch.distributed.all_reduce(t, op=op)
    return t.tolist()


def any_rank(trainer, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (``flag`` itself in one process). Every rank must call it at the same point."""
    if trainer.world_size == 1:
        return flag
    return bool(all_reduced(trainer, [float(flag)], torch.distributed.ReduceOp.MAX)[0])


def rank_zero_number(trainer, value: float) -> float:
    """Rank 0's ``value`` (a number: exact for integers below 2**53) on every rank, by an all-reduce to which
    the other ranks add 0 (``value`` itself in one process). Every rank must call it at the same point."""
    if trainer.world_size == 1:
        return value
    mine = float(value) if trainer.global_rank == 0 else 0.0
    return all_reduced(trainer, [mine], torch.distributed.ReduceOp.SUM)[0]


class ShareMeta(Callback):
    """Under DDP, every rank trains by rank 0's meta (its schedule was planned from rank 0's
    timing), broadcast once the process group is up and before the optimizers are made."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size > 1:
            pl_module.meta.update(agreed(trainer, pl_module.meta))


class EpochPosition(Callback):
    """Samples of the current epoch trained so far, over all ranks, kept in the checkpoint: where a
    run resumed in mid-epoch continues, in samples, so that it holds for another number of ranks."""

    def __init__(self) -> None:
        self.epoch, self.samples, self._resumed = 0, 0, None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        resumed, self._resumed = self._resumed, None
        self.epoch = trainer.current_epoch
        self.samples = resumed["samples"] if resumed and resumed["epoch"] == self.epoch else 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += int(batch["mask"].shape[0]) * trainer.world_size

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self._resumed = dict(state)


class SampleTrace(Callback):
    """Debugging aid, on with FGBG_TRACE=DIR: each rank logs every training batch it takes,
    ``{"epoch", "step", "index": [...]}`` (see :func:`trace`; checkpoint writes are logged too)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        line = {"epoch": trainer.current_epoch, "step": trainer.global_step, "index": batch["index"].tolist()}
        trace(line, trainer.global_rank)

    @classmethod
    def from_environment(cls) -> list["SampleTrace"]:
        return [cls()] if os.environ.get(TRACE_ENV) else []


def synchronize(device) -> None:
    """Wait until ``device`` (a torch.device) has done the work queued on it: a GPU runs behind the
    Python that queues its work, so a clock read without this times the queueing, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Throughput(Callback):
    """Training samples/s over all ranks: on the progress bar, in TensorBoard, in the summary.

    Samples over the wall-clock time of the training steps, the loading between them included,
    each epoch's start (workers starting) and validation excluded. The clock is read every
    ``trainer.log_every_n_steps`` steps, and at an epoch's end, after the device has finished the
    steps (:func:`synchronize`); the rate is logged then, not at every step (a float logged is a
    tensor Lightning makes on the device: a copy that waits for the GPU).
    """

    def __init__(self) -> None:
        self.samples, self.seconds = 0, 0.0
        self._epoch_samples, self._epoch_seconds = 0, 0.0
        self._since: float | None = None  # when the stretch of steps being timed began (None: no stretch open)
        self._pending, self._steps = 0, 0  # samples and steps of the open stretch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_samples, self._epoch_seconds = 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._since is None:
            synchronize(pl_module.device)
            self._since = now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = int(batch["mask"].shape[0]) * trainer.world_size
        self._pending, self._steps = self._pending + n, self._steps + 1
        if self._steps >= max(1, trainer.log_every_n_steps) or batch_idx + 1 >= trainer.num_training_batches:
            self._close(pl_module, keep_open=True)
            rate = self._epoch_samples / max(self._epoch_seconds, 1e-9)
            pl_module.log("samples_per_s", rate, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._close(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close(pl_module)

    def _close(self, pl_module, keep_open: bool = False) -> None:
        """Count the open stretch (after the device is done with it); the next one starts now, or at the next step."""
        if self._since is None:
            return
        synchronize(pl_module.device)
        t = now()
        dt, n = t - self._since, self._pending
        self.samples, self.seconds = self.samples + n, self.seconds + dt
        self._epoch_samples, self._epoch_seconds = self._epoch_samples + n, self._epoch_seconds + dt
        self._since, self._pending, self._steps = (t if keep_open else None), 0, 0

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
    """Seconds spent over every attempt of a run: training and validation, and each attempt's
    start-up from ``since`` (a ``time.perf_counter()``; None: from the first step).

    Kept in the checkpoint, so the budget (--max-minutes) counts what earlier attempts spent;
    stops the run (after the step in flight and a last validation) once ``budget`` seconds are
    spent, on all ranks at the same step: the first where they agree (:func:`agreeing`) after any
    rank's clock says so, or an epoch's end.
    Also keeps when the current epoch began, so the pace of an epoch split by Ctrl-C is still known.
    """

    def __init__(self, budget: float | None, since: float | None = None) -> None:
        self.budget, self.before, self._start, self._since = budget, 0.0, None, since
        self.epoch_start = (0.0, 0)  # (seconds, global step) when the previous epoch ended (0 for the first)

    @property
    def seconds(self) -> float:
        return self.before + (now() - self._start if self._start is not None else 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._since if self._since is not None else now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if agreeing(trainer):
            self._stop_when_spent(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # before the checkpoints: the next epoch pays for them
        self.epoch_start = (self.seconds, trainer.global_step)
        self._stop_when_spent(trainer)

    def _stop_when_spent(self, trainer) -> None:
        if self.budget is not None and any_rank(trainer, self.seconds >= self.budget):
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


class Replan(Callback):
    """Budget-sized runs: keep the schedule within the budget, in steps, so that it ends annealed.

    At every step, once a few steps of the current epoch are done (a tenth of an epoch, or of a
    schedule shorter than an epoch, at least 3), the pace of its latest steps, plus its validations,
    re-plans the schedule both ways (:func:`~fgbg.learn.budget.steps_for_budget`): longer when the
    plan made before training (a few steps timed on random inputs, maybe on a busy machine or a
    cold start) or an earlier pace was too slow, shorter when the rest would overrun the budget (a
    busier machine, an epoch longer than the budget, a resume's start-up). Until then, the last pace
    measured (or the first epoch's) may only cut it. An epoch too short for that is re-planned after its
    validation from its whole pace, with loading, validation and logging. A cut leaves at least one
    step, so the schedule's last step is taken: it ends fully annealed, where the budget alone would
    stop it halfway. The measured paces are kept in the run's meta (``schedule``).
    """

    def __init__(self, clock: TrainClock, budget: float, out: Path, log: Callable[[str], None]) -> None:
        self.clock, self.budget, self.out, self.report = clock, budget, out, log
        self._val_start = 0.0
        self._warm: tuple[float, int] | None = None  # (seconds, step) after this attempt's first step
        self._marks: list[tuple[float, int]] = []  # (seconds, step) of this epoch's latest steps, from its start or the warm-up
        self._pace: float | None = None  # seconds per step of the latest steps measured in this attempt
        self._paced_epoch = False  # this epoch has been re-planned from its own steps
        self._longer_at = -1  # the step of the last lengthening: the next is measured on steps after it
        self._said: int | None = None  # the schedule's length the log last gave

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = self.clock.seconds

    def on_validation_end(self, trainer, pl_module) -> None:
        schedule, done = pl_module.meta["schedule"], trainer.global_step
        if trainer.sanity_checking:
            return
        schedule["val_seconds"] = self.clock.seconds - self._val_start
        pace = self.clock.epoch_pace(done)
        if "seconds_per_step" not in schedule and not trainer.should_stop and pace is not None:
            schedule["seconds_per_step"] = rank_zero_number(trainer, pace)
            if not self._paced_epoch:  # the measured pace replaces the plan, both ways
                self.resize(trainer, pl_module, round(rank_zero_number(trainer, steps_at_pace(done, self.clock.seconds, self.budget))), "after epoch 1", always_said=True)
        if trainer.is_global_zero:
            atomic_write_json(self.out / "run.json", pl_module.meta)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._marks, self._paced_epoch = [], False  # paces within an epoch: validation and checkpoints fall between

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        meta, done, seconds = pl_module.meta, trainer.global_step, self.clock.seconds
        if self._warm is None:  # an attempt's first step pays for warming up: not a pace to plan by
            self._warm = (seconds, done)
        schedule = meta["schedule"]
        per_epoch, total = schedule["steps_per_epoch"], schedule["total_steps"]
        if not self._marks:
            self._marks = [max(self.clock.epoch_start, self._warm, key=lambda mark: mark[1])]
        if done > self._marks[-1][1]:
            self._marks = [*self._marks, (seconds, done)][-(2 * max(3, per_epoch // 10) + 1) :]
        if trainer.should_stop or not agreeing(trainer):  # under DDP the ranks re-plan together, every few steps
            return
        window = max(3, min(per_epoch, total) // 10)  # a tenth of an epoch, or of a shorter schedule
        if len(self._marks) > window:  # the latest steps' mean pace, what the budget pays (the first of an epoch: the last checkpoints too)
            (since, first), measured = self._marks[-1 - window], True
            pace = self._pace = (seconds - since) / (done - first)
        elif self._pace is not None or "seconds_per_step" in schedule:  # until then, an earlier pace: a resume's start-up may have eaten the room left
            pace, measured = self._pace if self._pace is not None else schedule["seconds_per_step"], False
        else:
            return
        val = validation_seconds(meta, pace)
        # least=1: a schedule cut where it stands would end on the learning rate of its middle; one step more ends it annealed
        new = steps_within_budget(done, total, seconds, self.budget, pace + val / per_epoch, val, least=1)
        if new == total and measured and len(self._marks) > 2 * window and done - self._longer_at >= 2 * window:
            # longer only when two windows in a row, both after the last lengthening, say so at the slower of their
            # paces: a burst of speed on a busy machine is not a trend, and one re-plan per window while the pace moves
            (t0, s0), (t1, s1) = self._marks[-1 - 2 * window], self._marks[-1 - window]
            slower = max(pace, (t1 - t0) / (s1 - s0))
            new = max(total, steps_for_budget(done, total, seconds, self.budget, slower + val / per_epoch, val, least=1))
        new = round(rank_zero_number(trainer, new))  # at the same steps on every rank: the early returns above count steps only
        self._paced_epoch = self._paced_epoch or measured
        if new != total:
            self._longer_at = done if new > total else self._longer_at
            self.resize(trainer, pl_module, new, f"at step {done}")

    def resize(self, trainer, pl_module, total: int, when: str, always_said: bool = False) -> None:
        """Re-plan the schedule to ``total`` steps, and say so (unless only a step re-plan by less than REPLAN_SAID)."""
        schedule, done = pl_module.meta["schedule"], trainer.global_step
        if total == schedule["total_steps"]:
            return
        bar, said = trainer.progress_bar_callback, self._said or schedule["total_steps"]
        # on a busy machine the pace moves and the schedule with it at many steps: the log gives a change of a tenth
        quiet = not always_said and abs(total - said) < REPLAN_SAID * said and total > done
        if trainer.is_global_zero and not quiet:
            (bar.print if bar is not None else self.report)(
                f"re-planned {when} ({self.clock.seconds:.1f} s of the {self.budget:.0f} s budget spent): {total} steps"
                f" ({total / schedule['steps_per_epoch']:.1f} epochs), was {said}"
            )
        self._said = said if quiet else total
        reschedule(trainer, pl_module.meta, total)
        trainer.should_stop = trainer.should_stop or total <= done


REPLAN_SAID = 0.1  # re-plans are logged when they change the schedule's length by this share since the last one logged


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
    see :meth:`fgbg.learn.data.EpochSampler.skip_once`), and fit() ends by :class:`StopRequested`. In validation (or on an
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
        if not agreeing(trainer):
            return
        self.requested = any_rank(trainer, self.requested)  # every rank stops at the same step, where they agree after any heard it
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
        self.requested = any_rank(trainer, self.requested)
        ending = trainer.should_stop or trainer.global_step >= pl_module.meta["schedule"]["total_steps"]
        if self.requested and not ending:
            trainer.should_stop, self.stopped, self.saved_step = True, True, trainer.global_step


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
        if not trainer.is_global_zero:
            return
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
        trace({"saved": Path(path).name, "step": checkpoint.get("global_step")}, rank_zero_only.rank or 0)


def progress_callbacks(progress: bool | None) -> list[Callback]:
    """True, or None on a terminal: Lightning's bar (drawn on stdout); None otherwise: LogLines; False: none."""
    if progress is False:
        return []
    if progress or is_terminal(sys.stdout):
        return [TQDMProgressBar(refresh_rate=5)]
    return [LogLines()]


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
