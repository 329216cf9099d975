"""``fgbg generate``: two folders of images -> a complete store; resumable, one writer at a time.

load assets -> check -> lock -> prepare out -> write assets -> map shards -> finalize.

Everything that can be refused (inputs, the depth network, the state of ``--out``, another
writer) is refused before the first byte is written. Then, holding the store's lock, the
parent writes the run's identity (``.work/state.json``) and the prepared assets; workers
render whole shards and commit them (``fgbg.make.render``); the parent records each one
(``fgbg.store.dataset``); a rerun skips recorded shards. Every commit is durable.
"""

from __future__ import annotations

import errno
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fgbg.config import GenerateConfig
from fgbg.depth.estimator import Estimator, load_estimator, worker_threads
from fgbg.depth.layered import horizon_row
from fgbg.depth.network import network_on_gpu, prepare_network_depth
from fgbg.engine import DEFAULT_RAY_ADDRESS, check_engine, map_shards
from fgbg.engine.local import worker_count
from fgbg.errors import UserError
from fgbg.make.assets import Assets, BadInput, load_assets, load_distractors, loose_fg_text
from fgbg.make.prepared import write_assets
from fgbg.make.render import Prepared, render_shard
from fgbg.store.dataset import finalize, record_path, write_record
from fgbg.store.identity import OBJECTS_VERSION, PRIOR_ORIGIN, begin_work, check_out_folder, out_status, prepare_out, remove_temporaries
from fgbg.store.layout import DATASET_JSON, SHARDS_DIR, make_dirs
from fgbg.store.lock import check_free, store_lock
from fgbg.store.plan import Plan

GenerateError = UserError  # the name callers of generate() catch


def make_state(config: GenerateConfig, assets: Assets, network: dict | None = None) -> dict:
    """The run's identity: config, every source (file, sha256, depth map origin), the network."""
    ground = horizon_row(config.frame[0], config.horizon)
    per_bg_network = config.depth == "estimator-per-bg"

    def origin(d) -> str:
        return "estimator" if per_bg_network else "sidecar" if d is not None else PRIOR_ORIGIN

    bg = [
        {
            "index": i,
            "file": s.file,
            "sha256": s.sha256,
            "depth": origin(d),
            "ground_top": ground if origin(d) == PRIOR_ORIGIN else 0,
        }
        for i, (s, d) in enumerate(zip(assets.bg_sources, assets.bg_depth))
    ]
    fg = [{"index": i, "file": s.file, "sha256": s.sha256} for i, s in enumerate(assets.fg_sources)]
    state = {"config": config.to_dict(), "sources": {"bg": bg, "fg": fg}}
    if config.distractors:
        state["sources"]["distractor"] = [{"index": i, "file": s.file, "sha256": s.sha256} for i, s in enumerate(assets.distractor_sources)]
    if config.several:
        state["objects_version"] = OBJECTS_VERSION
    if assets.bg_depth_set is not None:  # a record, not identity: same_run compares IDENTITY only
        state["bg_depth_set"] = assets.bg_depth_set
    state.update(assets.categories.record())  # a record too: the ids follow from the fg file names (SUB/FILE)
    return json.loads(json.dumps({**state, **(network or {})}))  # as it reads back from disk


@dataclass
class Summary:
    out: Path
    samples: int
    shards: int
    bytes: int
    seconds: float
    resumed_samples: int
    already_complete: bool = False  # the store was complete before this run: nothing was made
    format: str = "wds"

    def __str__(self) -> str:
        if self.already_complete:
            return (
                f"{self.out}: already complete ({self.samples} samples in {self.shards} shards,"
                f" {self.bytes / 1e6:.1f} MB); nothing to do"
            )
        made = self.samples - self.resumed_samples
        rate = f" ({made / self.seconds:.0f} samples/s)" if self.seconds > 0 else ""
        kept = f" ({self.resumed_samples} kept from an earlier run)" if self.resumed_samples else ""
        return (
            f"{self.samples} samples{kept} in {self.shards} shards, {self.bytes / 1e6:.1f} MB, "
            f"at {self.out}; {made} made in {self.seconds:.1f} s{rate}"
        )

    def how_to_read(self) -> str | None:
        """A wds store: the line that reads it with webdataset, by its own brace pattern; None for the other formats."""
        if self.format != "wds":
            return None
        return f'read it with: webdataset.WebDataset("{webdataset_pattern(self.out, self.shards)}", shardshuffle=False)'


def webdataset_pattern(out: Path, shards: int) -> str:
    """A wds store's shards as WebDataset's brace pattern: ``OUT/shards/shard-{000000..000006}.tar``."""
    names = f"shard-{{000000..{shards - 1:06d}}}" if shards > 1 else "shard-000000"
    return f"{Path(out) / SHARDS_DIR}/{names}.tar"


def load_inputs(
    bg_dir: Path, fg_dir: Path, config: GenerateConfig, on_bad: str, warn: Callable[[str], None], distractors: Path | None = None
) -> Assets:
    """The prepared bgs and fgs (and distractors); bad files reported (all at once), warnings passed on.

    Raises:
        BadInput: a folder is missing or empty, or (with --on-bad fail) files are bad.
        UserError: ``config.distractors`` without a distractor folder, or a folder without it.
    """
    if config.distractors != (distractors is not None):
        raise UserError("--distractors DIR and the config's distractors go together: pass the folder, or leave both out")
    assets = load_assets(Path(bg_dir), Path(fg_dir), config.frame, config.fg_size, config.bg_fit)
    if distractors is not None:
        assets.distractors, assets.distractor_sources = load_distractors(Path(distractors), Path(fg_dir), config.fg_size, assets.bad, assets.warnings)
    report_bad_input(assets, on_bad, warn, Path(fg_dir), distractors is not None)
    for line in assets.warnings:
        warn(f"warning: {line}")
    return assets


def report_bad_input(assets: Assets, on_bad: str, warn: Callable[[str], None], fg_dir: Path, distractors: bool = False) -> None:
    """--on-bad fail: raise with every bad file, one line each (images beside the category
    folders: one line naming them all); skip: warn and carry on (``distractors``: some must be left too)."""
    if assets.loose_fg:
        if on_bad == "fail":
            raise BadInput(f"{loose_fg_text(fg_dir, assets.loose_fg)}; move them into a category folder (or one of"
                           " their own), or pass --on-bad skip to leave them out")  # fmt: skip
        warn(f"warning: skipped {loose_fg_text(fg_dir, assets.loose_fg)}")
    lines = [str(b) for b in assets.bad]
    if lines and on_bad == "fail":
        raise UserError(
            "\n".join(lines + [f"{len(lines)} bad input file(s); fix or remove them, or pass --on-bad skip"])
        )
    for line in lines:
        warn(f"skipped {line}")
    wanted = [("background", assets.bg), ("foreground", assets.fg)] + ([("distractor", assets.distractors)] if distractors else [])
    for kind, items in wanted:
        if not items:
            raise UserError(f"no usable {kind} image left after skipping bad files")


def generate(
    bg_dir: Path,
    fg_dir: Path,
    out: Path,
    config: GenerateConfig,
    workers: int | None = None,
    on_bad: str = "fail",
    overwrite: bool = False,
    progress: bool | None = None,
    warn: Callable[[str], None] = print,
    engine: str = "local",
    ray_address: str = DEFAULT_RAY_ADDRESS,
    depth_workers: int | None = None,
    gpus_per_worker: float | None = None,
    distractors: Path | None = None,
) -> Summary:
    """Make (or resume, or confirm) the store ``out`` from two folders of images.

    Args:
        distractors: a folder of cut-outs pasted like objects but in no mask (``--distractors``;
            ``config.distractors`` must be set with it).
        workers: local: processes rendering shards (None = CPU count, 0 = this process);
            ray: shards at once (None = all of the cluster's CPUs).
        on_bad: "fail" (refuse, listing every bad input file) or "skip" (warn, go on).
        overwrite: replace a store made with another config or other sources.
        progress: None = a bar on a terminal, log lines otherwise; True = a bar; False = silent.
        engine: "local" (a process pool here) or "ray" (Ray tasks; ``out`` must then be on a
            file system every node sees; the assets travel in Ray's object store).
        ray_address: "auto" (RAY_ADDRESS, else a running local cluster, else a new local
            Ray instance), "local", or the head node's address.
        depth_workers, gpus_per_worker: with ray and ``--depth estimator``: Ray actors that
            hold the network (default: one per GPU, else a quarter of the CPUs), and GPUs
            apiece (fractions share a GPU; default 1 where the cluster has GPUs, else 0).
            The actors label the bgs (their scales) and every composite, and dataset.json
            records where they computed; ``config.depth_device`` applies inside each actor
            (cuda, cuda:N: the actor's own GPU).

    Raises:
        UserError: bad input, an unusable network, a foreign or mismatching ``out``,
            another writer on it (StoreBusy), a full disk.
    """
    out, started = Path(out), time.perf_counter()
    check_engine(engine, workers)  # a bad engine or worker count is refused before anything else
    check_out_folder(out)  # before the slow part: a file, someone else's folder, another writer
    check_free(out)
    assets = load_inputs(bg_dir, fg_dir, config, on_bad, warn, distractors)
    # on Ray the depth actors label the bgs too: the scales and the recorded compute are theirs
    labeller = None
    if engine == "ray" and config.depth == "estimator":
        labeller = ray_labeller(config, ray_address, depth_workers, gpus_per_worker, warn)
    elif config.depth == "estimator":  # loaded once here: it labels the bgs, and the composites where they render here
        labeller = load_estimator(config.depth_model, config.depth_preset or None, worker_threads(1), config.depth_device, warn)
    state = make_state(config, assets, prepare_network_depth(config, assets, warn, labeller))
    plan = Plan.from_config(len(assets.bg), len(assets.fg), config)
    out_status(out, state, overwrite)  # refuse a foreign or other store before the lock creates a file
    make_dirs(out)
    with store_lock(out, "generate"):
        if prepare_out(out, state, overwrite) == "complete":
            total_bytes = json.loads((out / DATASET_JSON).read_text())["total_bytes"]
            return Summary(out, len(plan), len(plan.shards()), total_bytes, 0.0, len(plan), already_complete=True, format=config.format)
        try:
            total_bytes, resumed = make_store(
                out, assets, config, state, plan, workers, progress, engine, ray_address, labeller
            )
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise UserError(
                    f"{e.filename or out}: disk full; free some space and rerun the same command to resume"
                ) from None
            raise
    return Summary(out, len(plan), len(plan.shards()), total_bytes, time.perf_counter() - started, resumed, format=config.format)


def make_store(
    out: Path, assets: Assets, config: GenerateConfig, state: dict, plan: Plan,
    workers: int | None, progress: bool | None, engine: str = "local", ray_address: str = DEFAULT_RAY_ADDRESS,
    labeller: Estimator | None = None,
) -> tuple[int, int]:  # fmt: skip
    """Under the lock: identity, assets, the missing shards, then manifest and dataset.json.

    ``labeller``: the network that labelled the bgs: Ray's depth actors, which the shard tasks
    render with, or this process's, which renders here when the shards do (``workers`` 0, or the
    network on a GPU); worker processes load ``config.depth_model`` each.

    Returns (bytes of the shards, samples kept from an earlier run).
    """
    begin_work(out, state)
    write_assets(out, assets, config)
    shards = plan.shards()
    todo = [s for s in shards if not record_path(out, s).exists()]
    resumed = len(plan) - sum(len(s) for s in todo)
    if engine == "local" and network_on_gpu(state):
        workers = 0  # one network per GPU: this process drives it, CPU threads feed it (fgbg.depth.pipeline)
    if engine == "local" and worker_count(workers, len(todo)):
        labeller = None  # each worker process loads its own
    # a network's threads: the cores shared by the local workers; one per Ray task (a task holds one CPU)
    threads = 1 if engine == "ray" else worker_threads(max(1, worker_count(workers, len(todo))))
    shared = (Prepared.from_store(out), threads) + ((labeller,) if labeller is not None else ())
    finished = map_shards(
        render_shard, [(str(out), s.index, s.start, s.stop) for s in todo], weights=[len(s) for s in todo],
        workers=workers, progress=progress, shared=shared, engine=engine,
        ray_address=ray_address, done=resumed, describe=lambda task: shards[task[1]].name, desc="generate",
    )  # fmt: skip
    for index, record, lines in finished:
        write_record(out, shards[index], record, lines)
    remove_temporaries(out)  # a Ray worker killed mid-shard leaves its temporary file; its retry committed the shard
    return finalize(out, plan, shards, state), resumed


def ray_labeller(
    config: GenerateConfig, ray_address: str, count: int | None, gpus: float | None, warn: Callable[[str], None] | None = None
) -> Estimator:  # fmt: skip
    """The estimator the driver labels the bgs with and the Ray shard tasks render with: depth actors,
    each holding the network once (on a GPU where the cluster has them), described as they run it;
    composing and encoding stay in the tasks (2 batches in flight per task).

    Raises:
        UserError: no cluster at ``ray_address``; an actor cannot load the network; a GPU
            asked for where there is none (see :func:`fgbg.engine.ray_engine.actor_placement`).
    """
    from fgbg.engine import ray_engine

    ray_engine.connect(ray_address)
    return ray_engine.actor_labeller(
        config.depth_model, config.depth_preset or None, config.depth_device, count, gpus, threads=2, warn=warn
    )  # fmt: skip
