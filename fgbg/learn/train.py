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

Devices: ``accelerator``/``devices``/``num_nodes``/``strategy``/``precision`` are resolved once by
:func:`fgbg.engine.devices.resolve_training` (auto: every visible GPU, else one CPU process) and go
to Lightning as they are: several GPUs or CPU processes train with DDP, launched by Lightning itself,
by ``torchrun`` or by SLURM (Lightning reads their environment; nothing here launches processes).
``batch`` is per process; each step trains ``batch x world size`` samples. Every rank trains by rank
0's plan, and only rank 0 writes run.json, summary.json, checkpoints and TensorBoard images.

Validation during training runs on a fixed, seeded subset of the held-out split (``val_samples``);
the evaluation of the whole held-out split is the separate step ``fgbg evaluate`` (the summary
says the command).

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
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from fgbg.engine.devices import TrainingDevices, cudnn_autotuning, resolve_training
from fgbg.config import GenerateConfig
from fgbg.errors import UserError
from fgbg.learn import budget, metrics
from fgbg.learn.callbacks import (
    AtomicCheckpointIO, CtrlC, EndOfSchedule, EpochPosition, FollowSchedule, Replan, SampleTrace, ShareMeta, StopRequested,
    Throughput, TrainClock, progress_callbacks, quiet_lightning,
)  # fmt: skip
from fgbg.learn.data import (
    SHM_SHARE, AugmentConfig, StoreDataset, compact_sample_bytes, content_slices, fit_workers_to_shm, load_stats, make_loader, read_entries,
    shm_free_bytes, split_indices, validation_subset,
)  # fmt: skip
from fgbg.learn.losses import LossConfig, MaskDepthLoss
from fgbg.learn.model import ModelConfig, TwoHeadUNet, count_macs, count_parameters
from fgbg.learn.module import FgbgModule
from fgbg.learn.perturb import BgAugConfig, bg_aug_config
from fgbg.learn.resume import (
    Position, TrainInterrupted, interrupted_hint, leave_ctrl_c_to_trainer, resume_command, resume_loader_at, resume_meta,
    resumed_in_mid_epoch,
)  # fmt: skip
from fgbg.learn.train_config import TrainConfig  # noqa: F401 (its home is below budget and resume; still importable from here)
from fgbg.store.layout import atomic_write_json, read_dataset_json

BEST, LAST = "best", "last"  # checkpoint names: best.ckpt, last.ckpt
MONITOR = "val/mask_iou"
BASELINE_SAMPLES = 256  # training samples used to choose the baseline threshold


class TrainError(UserError, ValueError):
    """A problem the user can fix (an occupied --out, nothing to resume, too small a store)."""


def default_loader_workers(devices: TrainingDevices | None = None) -> int:
    """Loader processes per training process. On the CPU: 0 on 2 cores or fewer, else 1 (on 2 cores
    a loader process takes CPU from the two training threads; demo, 64 px: 87-108 training
    samples/s with one, 150 loading in-process). On a GPU: about the cores per device (one left
    to the process that drives it), so decoding keeps up with the GPU."""
    cores = os.cpu_count() or 1
    if devices is None or not devices.on_gpu:
        return 0 if cores <= 2 else 1
    return max(1, cores // processes_per_node(devices) - 1)


def processes_per_node(devices: TrainingDevices) -> int:
    return len(devices.devices) if isinstance(devices.devices, list) else devices.devices


def plan_loading(store: Path, t: dict, devices: TrainingDevices, log: Callable[[str], None],
                 free_bytes: Callable[[], int | None] | None = None) -> tuple[int, int]:  # fmt: skip
    """(loader workers, batches ahead per worker) of each of a run's two loaders (train settings ``t``):
    ``workers`` (None: :func:`default_loader_workers`), 2 batches ahead on a GPU, 4 on the CPU; fewer,
    said in one line, where the free shared memory cannot hold what they would have in flight
    (:func:`~fgbg.learn.data.fit_workers_to_shm`: the training and validation batches of every
    process on this machine). ``free_bytes``: the free shared memory (None: /dev/shm's).

    Raises:
        TrainError: not one batch ahead of one worker fits; names the size /dev/shm needs, or --workers 0.
    """
    workers = default_loader_workers(devices) if t["workers"] is None else t["workers"]
    prefetch = 2 if devices.on_gpu else 4  # on a GPU there are many workers (a compact 224 px batch of 256 is 0.1 GB)
    free = (free_bytes or shm_free_bytes)() if workers else None
    if free is None:
        return workers, prefetch
    depth_bytes = 2 if read_dataset_json(store)["config"].get("depth_bits", 8) > 8 else 1
    sample = compact_sample_bytes(t["size"], depth_bytes)
    processes = processes_per_node(devices)
    ahead = processes * sample * (t["batch"] + max(t["batch"], 64))  # one batch ahead of one worker: training's and validation's
    fitted = fit_workers_to_shm(workers, prefetch, ahead, free)
    if fitted == (workers, prefetch):
        return fitted
    what = f"batch {t['batch']} at {t['size']} px: {ahead / 2**20:.0f} MiB with validation's" + (f", {processes} processes" if processes > 1 else "")
    everything = gib(workers * prefetch * ahead / SHM_SHARE)
    if fitted is None:
        raise TrainError(
            f"/dev/shm has {free / 2**20:.0f} MiB free, too little for one batch ahead of one loader worker ({what}):"
            f" give it at least {gib(ahead / SHM_SHARE)} (docker run --shm-size={everything} for all {workers} workers x {prefetch} batches),"
            " or pass --workers 0 to load in the training process"
        )
    log(
        f"/dev/shm has {free / 2**20:.0f} MiB free: {fitted[0]} loader worker{'s' * (fitted[0] > 1)} x {fitted[1]} batch{'es' * (fitted[1] > 1)} ahead instead of"
        f" {workers} x {prefetch} ({what}); give it {everything} for all of them (docker run --shm-size={everything})"
    )
    return fitted


def gib(n: float) -> str:
    """Bytes as a size for a person and for docker's --shm-size, rounded up to a tenth of a GiB: 3.2g."""
    return f"{math.ceil(n / 2**30 * 10) / 10:g}g"


def launcher_layout() -> tuple[int, int] | None:
    """(processes per node, nodes) when a standard launcher started this process: torchrun
    (LOCAL_WORLD_SIZE, WORLD_SIZE) or a SLURM job step (SLURM_NTASKS_PER_NODE, SLURM_NNODES); else None.
    Lightning requires --devices and --num-nodes to match them; they are the defaults."""
    env = os.environ
    if "LOCAL_WORLD_SIZE" in env and "WORLD_SIZE" in env:
        local = int(env["LOCAL_WORLD_SIZE"])
        return local, max(1, int(env["WORLD_SIZE"]) // local)
    if "SLURM_NTASKS_PER_NODE" in env and "SLURM_NNODES" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return int(env["SLURM_NTASKS_PER_NODE"].split("(")[0]), int(env["SLURM_NNODES"])
    return None


def training_devices(config: TrainConfig) -> TrainingDevices:
    """The run's devices: the config's, with torchrun's or SLURM's layout as the defaults.

    Raises:
        DeviceError: ``--accelerator gpu`` (or ``--devices`` with auto) without a GPU, more GPUs than visible,
            an unknown name (one line, exit 2).
    """
    devices, nodes = config.devices, config.num_nodes
    layout, launched = launcher_layout(), False
    if layout is not None:
        launched = devices in (None, "auto")
        devices = str(layout[0]) if launched else devices
        nodes = nodes or layout[1]
    return resolve_training(config.accelerator, devices, nodes or 1, config.strategy, config.precision, launched)


def process_rank() -> int:
    """This process's global rank as its launcher set it (0 alone): known before the process group starts."""
    return int(rank_zero_only.rank or 0)



def check_samples_per_rank(store: Path, t: dict, world: int) -> None:
    """Every one of ``world`` processes trains and validates on at least one sample (train settings ``t``):
    Lightning refuses a rank's empty loader while the other ranks wait for it in gloo or NCCL (a traceback
    on each, or a hang). One line, before anything is written; each rank decides the same.

    Raises:
        TrainError: fewer training samples, or fewer held-out samples to validate on, than processes.
    """
    if world < 2:
        return
    entries = read_entries(store)
    try:
        split = split_indices(entries, t["val"], t["val_fraction"], t["seed"])
    except ValueError:
        return  # too few bgs or fgs to hold one out: make_meta says so
    validated = len(validation_subset(split.val, t.get("val_samples", 0), t["seed"]))
    if len(split.train) < world:
        raise TrainError(f"{store}: {len(split.train)} training samples for {world} processes; each needs one at least: use fewer --devices or a bigger store")
    if validated < world:
        fix = f"--val-samples {world} or more (0: all {len(split.val)})" if len(split.val) >= world else "a larger --val-fraction"
        raise TrainError(f"{store}: {validated} held-out samples to validate on for {world} processes; each validates on one at least: give {fix}, or fewer --devices")


def make_meta(store: Path, config: TrainConfig, model: ModelConfig, loss: LossConfig, log: Callable[[str], None],
              devices: TrainingDevices | None = None, started: float | None = None) -> dict:  # fmt: skip
    """Everything a run is: configs, stats, split, baseline threshold and schedule (in steps of
    ``batch x devices.world_size`` samples; a budget-sized one timed on rank 0's device, for
    what is left of the budget after the start-up since ``started``, a perf_counter)."""
    started = time.perf_counter() if started is None else started
    devices = devices or resolve_training("cpu")
    entries = read_entries(store)
    split = split_indices(entries, config.val, config.val_fraction, config.seed)
    if len(split.train) < 1 or len(split.val) < 1:
        raise TrainError(f"{store}: too few samples to hold out a validation split ({len(entries)})")
    stats = load_stats(store)
    plain = StoreDataset(store, split.train, config.size, stats, normalized=False)
    g = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(len(plain), generator=g)[:BASELINE_SAMPLES].tolist()
    loading = time.perf_counter()
    batch = plain.prepare(torch.utils.data.default_collate([plain[i] for i in chosen]))  # timed with the float step: both run in-process without workers
    load_seconds = (time.perf_counter() - loading) / len(chosen)
    ys, xs = content_slices(batch)  # a padded sample's padding left out
    threshold = metrics.choose_baseline_threshold(batch["bg"][..., ys, xs], batch["fg_bg"][..., ys, xs], batch["mask"][..., ys, xs])
    plain.reader.close()
    global_batch = config.batch * devices.world_size
    steps_per_epoch = max(1, len(split.train) // global_batch)
    n_validated = len(validation_subset(split.val, config.val_samples, config.seed))
    net = TwoHeadUNet(model)
    sec = 0.0
    if config.epochs is None and process_rank() == 0:  # the other ranks train by rank 0's plan (ShareMeta)
        timing_batch = config.batch if devices.on_gpu else min(config.batch, 16)
        sec = budget.seconds_per_sample(net, MaskDepthLoss(loss), config.size, timing_batch, devices=devices)
    workers = default_loader_workers(devices) if config.workers is None else config.workers
    spent = time.perf_counter() - started
    total_steps = budget.plan_steps(config, steps_per_epoch, n_validated, sec, load_seconds, workers, devices.world_size, spent) if sec or config.epochs else 1
    if config.epochs is None and sec:
        log(
            f"budget {config.max_minutes:g} min at {1 / sec:.0f} samples/s measured (loading {1 / load_seconds:.0f}/s):"
            f" a schedule of {total_steps} steps ({total_steps / steps_per_epoch:.1f} epochs)"
        )
    meta_store = read_dataset_json(store)
    meta = {
        "store": str(Path(store).resolve()),
        "store_size": meta_store["config"]["size"],
        "store_frame": list(GenerateConfig.from_dict(meta_store["config"]).frame),  # (H, W); the samples are letterboxed into size x size when not square
        "model": model.to_dict(),
        "train": dataclasses.asdict(config),
        "loss": dataclasses.asdict(loss),
        "augment": dataclasses.asdict(AugmentConfig()) if config.augment else None,
        "bg_augment": dataclasses.asdict(bg_aug) if (bg_aug := bg_aug_config(config.bg_aug)) else None,
        "stats": dataclasses.asdict(stats),
        "split": split.record(),
        "validation": {"samples": n_validated, "of": len(split.val), "seed": config.seed},
        "devices": devices.record(config.batch),
        "baseline": {"threshold": threshold, "chosen_on": f"{len(chosen)} training samples"},
        "schedule": {"kind": "one-cycle", "sized_by": "epochs" if config.epochs else "budget", "steps_per_epoch": steps_per_epoch,
                     "global_batch": global_batch},
        "parameters": count_parameters(net),
        "macs_per_sample": count_macs(net, config.size),
    }
    budget.set_schedule(meta, total_steps)
    return meta


def make_loaders(store: Path, meta: dict, devices: TrainingDevices, loading: tuple[int, int] | None = None):
    """(train loader, val loader) from a run's meta: split, validated subset, size, stats and
    augmentation; on a GPU, pinned memory and (by default) a loader process per core of the device.
    Each rank loads its share (:class:`~fgbg.learn.data.EpochSampler`). ``loading``: (workers, batches
    ahead) of each loader, from :func:`plan_loading` (None: its defaults, unchecked)."""
    t = meta["train"]
    split = split_indices(read_entries(store), t["val"], t["val_fraction"], t["seed"])
    stats = load_stats(store)
    if stats.mean != meta["stats"]["mean"] or stats.std != meta["stats"]["std"]:
        raise TrainError(f"{store}: stats.json changed since this run started; start a new run")
    augment = AugmentConfig(**meta["augment"]) if meta["augment"] else None
    bg_augment = BgAugConfig.from_dict(meta["bg_augment"]) if meta.get("bg_augment") else None  # runs before it: none
    train_ds = StoreDataset(store, split.train, t["size"], stats, augment, t["seed"], bg_augment=bg_augment)
    val_ds = StoreDataset(store, validation_subset(split.val, t.get("val_samples", 0), t["seed"]), t["size"], stats)
    workers, prefetch = loading or (default_loader_workers(devices) if t["workers"] is None else t["workers"], 2 if devices.on_gpu else 4)
    pin = devices.on_gpu
    full = len(train_ds) // devices.world_size >= t["batch"]
    train_loader = make_loader(train_ds, t["batch"], True, workers, t["seed"], drop_last=full, even=True, pin_memory=pin, prefetch=prefetch)
    val_loader = make_loader(val_ds, max(t["batch"], 64), False, workers, t["seed"], pin_memory=pin, prefetch=prefetch)
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
    started = time.perf_counter()
    store, out = Path(store), Path(out)
    devices = training_devices(config)  # before any work: `--accelerator gpu` without a GPU stops here
    last, command = out / f"{LAST}.ckpt", resume_command(store, out)
    if resume and not last.exists():
        raise TrainError(f"{out}: no {LAST}.ckpt to resume from; drop --resume to start a new run")
    if not resume and last.exists():
        raise TrainError(f"{out}: holds a run already; continue it with `{command}`, or choose another --out")
    rank_zero = process_rank() == 0
    log = log if rank_zero else (lambda line: None)
    if devices.note:
        log(f"note: {devices.note}")
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // processes_per_node(devices)))
    try:
        if resume:
            meta, at = resume_meta(last, config, log)
            if at.step >= meta["schedule"]["total_steps"]:
                return finished_summary(out, at, meta, log)
            check_samples_per_rank(store, meta["train"], devices.world_size)
            fit_to_devices(meta, at, devices, log)
            loading = plan_loading(store, meta["train"], devices, log)
        else:
            check_samples_per_rank(store, dataclasses.asdict(config), devices.world_size)  # refused before anything is written
            loading = plan_loading(store, dataclasses.asdict(config), devices, log)
            out.mkdir(parents=True, exist_ok=True)
            meta, at = make_meta(store, config, model, loss, log, devices, started), Position(0, 0, 0, 0.0)
        if rank_zero:
            atomic_write_json(out / "run.json", meta)
        history, throughput, clock, trainer = fit(store, out, meta, at, devices, resume, progress, log, command, callbacks or [], started, loading)
    except TrainInterrupted:
        raise
    except KeyboardInterrupt:  # before the Trainer listens (planning, loading) or after it stopped listening
        raise TrainInterrupted(interrupted_hint(last, None, None, command)) from None
    summary = summarize(history, throughput, time.perf_counter() - started, clock.seconds, trainer, out, meta, store)
    if trainer.is_global_zero:
        atomic_write_json(out / "summary.json", summary)
        log(format_summary(summary))
    return summary


def fit_to_devices(meta: dict, at: Position, devices: TrainingDevices, log: Callable[[str], None]) -> None:
    """A resumed run's meta for this attempt's devices: what they are, epochs in steps of the new
    global batch and, for a schedule sized by epochs, the steps left re-counted so that the run still
    trains as many samples (a budget-sized one keeps its steps: a step takes about as long)."""
    schedule, batch = meta["schedule"], meta["train"]["batch"]
    before, now = schedule.get("global_batch", batch), batch * devices.world_size
    meta["devices"] = devices.record(batch)
    schedule["global_batch"] = now
    schedule["steps_per_epoch"] = max(1, meta["split"]["n_train"] // now)
    total = schedule["total_steps"]
    if now != before and schedule["sized_by"] == "epochs":
        total = at.step + max(1, math.ceil((total - at.step) * before / now))
        log(f"{devices.world_size} processes now ({now} samples per step, was {before}): {total - at.step} steps left, was {schedule['total_steps'] - at.step}")
    budget.set_schedule(meta, total)


def fit(store: Path, out: Path, meta: dict, at: Position, devices: TrainingDevices, resume: bool, progress: bool | None,
        log: Callable[[str], None], command: str, callbacks: list[Callback], started: float, loading: tuple[int, int] | None = None,
        ) -> tuple[list[dict], Throughput, TrainClock, L.Trainer]:  # fmt: skip
    """Build loaders (``loading``: see :func:`make_loaders`), module and Trainer for a run's ``meta`` on ``devices``
    and fit from ``at``: (val history, throughput, clock, trainer). The clock counts from ``started`` (a perf_counter).

    Raises:
        TrainInterrupted: Ctrl-C (see :class:`CtrlC`).
    """
    t, last = meta["train"], out / f"{LAST}.ckpt"
    train_loader, val_loader = make_loaders(store, meta, devices, loading)
    resume_loader_at(train_loader, at)
    L.seed_everything(t["seed"], workers=True, verbose=False)  # the initial weights (a resume loads its own)
    module = FgbgModule(meta)
    if devices.on_gpu:
        torch.set_float32_matmul_precision("high")  # TF32 where fp32 remains
    if t.get("compile"):
        module.net.compile()  # in place: the checkpoint's parameter names stay those of the plain network
    d = meta["devices"]
    log(
        f"training on {d['world_size']} x {d['name']} ({d['accelerator']}, {d['precision']}, {d['strategy']});"
        f" {d['batch_per_device']} samples per device, {d['global_batch']} per step;"
        f" validating on {meta['validation']['samples']} of the {meta['validation']['of']} held-out samples"
    )
    log(
        f"{meta['parameters'] / 1e6:.3f} M parameters, {meta['macs_per_sample'] / 1e9:.3f} GMACs per {t['size']}x{t['size']} sample;"
        f" {meta['split']['n_train']} train / {meta['split']['n_val']} val samples (held out by {t['val']}: {meta['split']['held_out']});"
        f" baseline threshold {meta['baseline']['threshold']:.2f}; stats: {meta['stats']['source']}"
    )
    budget_seconds = t["max_minutes"] * 60 if t["max_minutes"] else None
    throughput, clock = Throughput(), TrainClock(budget_seconds, since=started)
    replan = [Replan(clock, budget_seconds, out, log)] if budget_seconds and meta["schedule"]["sized_by"] == "budget" else []
    ctrl_c = CtrlC(last, lambda line: print(line, file=sys.stderr, flush=True))
    ours = [ShareMeta(), *SampleTrace.from_environment(), EpochPosition(), *resumed_in_mid_epoch(train_loader, at), throughput, clock,
            EndOfSchedule(), FollowSchedule(),
            *replan, *progress_callbacks(progress), ctrl_c]  # fmt: skip
    # one input size: cuDNN may pick its fastest kernels, for the run only
    with quiet_lightning(), warnings.catch_warnings(), ctrl_c.listening(), cudnn_autotuning(devices.on_gpu):
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")  # EpochSampler.skip_once resumes it exactly
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # validation metrics are reduced by their states
        trainer = make_trainer(out, meta, devices, [*ours, *callbacks])
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


def make_trainer(out: Path, meta: dict, devices: TrainingDevices, callbacks: list[Callback]) -> L.Trainer:
    """The Trainer of a run on ``devices``: TensorBoard logs, best.ckpt and last.ckpt written atomically
    (by rank 0), ``callbacks``. The loaders shard themselves (EpochSampler), so Lightning's
    distributed sampler, which would pad validation with repeated samples, stays off."""
    # Two callbacks: Lightning 2.6 writes save_last only when the best also changed.
    best = ModelCheckpoint(dirpath=out, filename=BEST, monitor=MONITOR, mode="max", save_top_k=1, enable_version_counter=False)
    latest = ModelCheckpoint(dirpath=out, filename=LAST, save_top_k=1, enable_version_counter=False)
    return L.Trainer(
        accelerator=devices.accelerator,
        devices=devices.devices,
        num_nodes=devices.num_nodes,
        strategy=devices.strategy,
        precision=devices.precision,
        use_distributed_sampler=False,
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


def summarize(history: list[dict], throughput: Throughput, seconds: float, train_seconds: float, trainer: L.Trainer, out: Path,
              meta: dict, store: Path) -> dict:  # fmt: skip
    """The run's summary.json: best and last validation (on the validated subset), steps, wall seconds
    of this attempt and seconds of all attempts (what the budget counts), speed, where the
    checkpoints are, and the command that evaluates the whole held-out split."""
    best = max(history, key=lambda h: h["mask_iou"]) if history else {}
    validation = meta.get("validation", {"samples": meta["split"]["n_val"], "of": meta["split"]["n_val"]})
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
        "devices": meta.get("devices"),
        "validated_on": f"{validation['samples']} of {validation['of']} held-out samples",
        "evaluate": evaluate_command(out, store),
    }


def evaluate_command(out: Path, store: Path) -> str:
    """The separate step that evaluates the best checkpoint on the whole held-out split."""
    return shlex.join(["fgbg", "evaluate", str(out / f"{BEST}.ckpt"), str(store), "--out", str(out / "eval")])


def format_summary(s: dict) -> str:
    b = s["best"]
    if not b:
        return f"no validation ran; {s['seconds']:.0f} s"
    return (
        f"best epoch {s['best_epoch']}: val {metrics.format_metrics(b)}\n"
        f"{s['epochs_done']} epochs, {s['global_step']} steps in {s['seconds'] / 60:.1f} min,"
        f" {s['train_samples_per_s']:.0f} training samples/s; checkpoints {s['best_ckpt']}, {s['last_ckpt']};"
        f" logs: {s['tensorboard']}\n"
        f"validated on {s['validated_on']}; evaluate the whole held-out split: {s['evaluate']}"
    )
