"""The time budget of a run (``--max-minutes``) in optimizer steps.

A budget-sized schedule is planned before training from a few timed steps (:func:`plan_steps`),
re-planned from the pace measured while training (:class:`fgbg.learn.callbacks.Replan`) and, on a
resume, fitted to what is left of the budget (:func:`fgbg.learn.resume.resume_meta`). Each time it
is cut to end within BUDGET_SHARE of the budget, so that it still anneals fully instead of being
stopped halfway by the clock.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING

import contextlib

import lightning as L
import torch

from fgbg.learn.losses import MaskDepthLoss
from fgbg.learn.model import TwoHeadUNet
from fgbg.learn.module import one_cycle

if TYPE_CHECKING:
    from fgbg.engine.devices import TrainingDevices
    from fgbg.learn.train_config import TrainConfig

BUDGET_SHARE = 0.95  # with --max-minutes only: plan the schedule to end within this share of the budget
LENGTHEN_AT = 1.1  # a schedule is lengthened for at least 10% more steps (shortened once the budget would overrun)


def seconds_per_sample(net: TwoHeadUNet, loss: MaskDepthLoss, size: int, batch: int, steps: int = 5,
                       devices: TrainingDevices | None = None) -> float:  # fmt: skip
    """Measured training time (forward + backward + step) per sample at ``size``, on random inputs,
    on one of ``devices`` (default the CPU; on a GPU in its mixed precision): the median of
    ``steps`` steps after a warm-up (the minimum underestimated a 10-minute run by 15%)."""
    on_gpu = devices is not None and devices.on_gpu
    where = f"cuda:{devices.devices[0] if isinstance(devices.devices, list) else 0}" if on_gpu else "cpu"
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(devices.precision if devices else "")
    mixed = torch.autocast("cuda", dtype=dtype) if on_gpu and dtype else contextlib.nullcontext()
    net = TwoHeadUNet(net.config).to(where, memory_format=torch.channels_last)
    loss = loss.to(where)
    opt = torch.optim.AdamW(net.parameters())
    x = torch.randn(batch, 6, size, size, device=where).contiguous(memory_format=torch.channels_last)
    target = (torch.rand(batch, 1, size, size, device=where) > 0.5).float()
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with mixed:
            l = loss(net(x), target, target).total
        opt.zero_grad()
        l.backward()
        opt.step()
        if on_gpu:
            torch.cuda.synchronize(where)  # the GPU's time, not the launch's
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) / batch


def plan_steps(config: TrainConfig, steps_per_epoch: int, n_val: int, step_seconds: float, load_seconds: float,
               workers: int = 0, world_size: int = 1, spent: float = 0.0) -> int:  # fmt: skip
    """Optimizer steps of the schedule: the configured epochs, or (budget only) as many steps as fit
    BUDGET_SHARE of --max-minutes, less the ``spent`` seconds of start-up, validation of ``n_val``
    samples once per epoch included: fewer than an epoch when the budget is short, so that the
    schedule still anneals.

    Per sample of a process (``world_size`` of them work in parallel, ``config.batch`` samples each
    per step): a training step (validation: a forward, about a third), plus the decoding when the
    loader runs in the training process (``workers`` 0); in worker processes it overlaps the steps
    (:class:`Replan` corrects the plan from the measured pace when it does not).
    """
    if config.epochs is not None:
        return config.epochs * steps_per_epoch
    load = load_seconds if workers == 0 else 0.0
    per_step = config.batch * (step_seconds + load) + n_val / world_size * (step_seconds / 3 + load) / steps_per_epoch
    return max(1, math.floor((config.max_minutes * 60 * BUDGET_SHARE - spent) / per_step))  # less than an epoch on a big store


def set_schedule(meta: dict, total_steps: int) -> None:
    """Record a schedule of ``total_steps`` in a run's meta (the last epoch may be partial)."""
    epochs = math.ceil(total_steps / meta["schedule"]["steps_per_epoch"])
    meta["schedule"].update(epochs=epochs, total_steps=total_steps)
    meta["train"]["epochs"] = epochs


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


def steps_for_budget(done: int, total: int, spent: float, budget: float, pace: float, reserve: float = 0.0, least: int = 0) -> int:
    """:func:`steps_within_budget` both ways: also longer, when the steps that fit BUDGET_SHARE of
    the budget at ``pace`` are at least LENGTHEN_AT times ``total`` (a plan timed on a busy machine,
    a cold start). Between the two bounds the schedule stays, so that a noisy pace does not move it
    at every step; longer or shorter, it is re-planned to end annealed at its new last step.
    """
    cut = steps_within_budget(done, total, spent, budget, pace, reserve, least)
    if cut != total:
        return cut
    fit = done + max(least, math.floor((budget * BUDGET_SHARE - spent - reserve) / pace))
    return fit if fit >= total * LENGTHEN_AT else total


def steps_at_pace(done: int, spent: float, budget: float) -> int:
    """The schedule length that fits BUDGET_SHARE of ``budget`` seconds at the pace of ``done`` steps
    in ``spent`` seconds (every cost of those steps included), and at least ``done``."""
    return max(done, math.floor(budget * BUDGET_SHARE / spent * done))


def validation_seconds(meta: dict, step_seconds: float) -> float:
    """One validation's seconds: the last one measured, or before any, the plan's guess (a forward
    pass, a third of a training step, per sample of each rank's share of the validated subset)."""
    if "val_seconds" in meta["schedule"]:
        return meta["schedule"]["val_seconds"]
    samples = meta.get("validation", {}).get("samples", meta["split"]["n_val"])
    ranks = meta.get("devices", {}).get("world_size", 1)
    return step_seconds * samples / ranks / meta["train"]["batch"] / 3


def reschedule(trainer: L.Trainer, meta: dict, total: int) -> None:
    """Give a running trainer a one-cycle schedule of ``total`` steps, positioned at its current step."""
    set_schedule(meta, total)
    config = trainer.lr_scheduler_configs[0]
    config.scheduler = one_cycle(config.scheduler.optimizer, meta["train"]["lr"], total, trainer.global_step)
