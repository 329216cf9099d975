"""plan -> workers -> store, with resume and progress.

The parent process prepares the assets, writes them into ``OUT/assets`` and the run's
identity into ``OUT/.work/state.json``; worker processes (spawned, each reading the
assets itself) render whole shards and rename them into place; the parent records each
finished shard in ``.work/shard-NNNNNN.json``. A rerun skips recorded shards. When all
are done, ``manifest.jsonl`` and ``dataset.json`` are written and ``.work`` removed.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import PIL
import simplejpeg

from fgbg import __version__, codecs
from fgbg.make.assets import Assets, BadInput, fg_mask, load_assets
from fgbg.config import GenerateConfig
from fgbg.depth.estimator import EstimatorError, apply_scale, bg_scales, image_range, load_estimator, worker_threads
from fgbg.depth.layered import ground_plane_prior, horizon_row, quantize_depth
from fgbg.make.plan import Plan, Shard
from fgbg.engine.local import map_shards
from fgbg.make.render import BG_DEPTH_BITS, Renderer, asset_paths
from fgbg.store.layout import (
    ASSETS_DIR,
    DATASET_JSON,
    MANIFEST,
    MEMBERS,
    SHARDS_DIR,
    TMP_SUFFIX,
    WORK_DIR,
    atomic_write_bytes,
    atomic_write_json,
)
from fgbg.store.write import write_shard

# What a store owns at its root: the only names --overwrite ever deletes.
OWNED = [DATASET_JSON, MANIFEST, SHARDS_DIR, ASSETS_DIR, WORK_DIR, "stats.json", ".stats_cache", "README.md", "previews"]
OWNED += sorted({kind for kind, _ in MEMBERS.values()})


class GenerateError(Exception):
    """A problem the user can fix; ``str()`` is one or more lines that say how."""


@dataclass
class Summary:
    out: Path
    samples: int
    shards: int
    bytes: int
    seconds: float
    resumed_samples: int

    def __str__(self) -> str:
        made = self.samples - self.resumed_samples
        rate = made / self.seconds if self.seconds > 0 else float("inf")
        kept = f" ({self.resumed_samples} kept from an earlier run)" if self.resumed_samples else ""
        return (
            f"{self.samples} samples{kept} in {self.shards} shards, {self.bytes / 1e6:.1f} MB, "
            f"at {self.out}; {made} made in {self.seconds:.1f} s ({rate:.0f} samples/s)"
        )


# ---------------------------------------------------------------- identity and out folder


def make_state(config: GenerateConfig, assets: Assets, network: dict | None = None) -> dict:
    """The run's identity: config, every source (file, sha256, depth map origin), the network."""
    ground = horizon_row(config.size, config.horizon)
    per_bg_network = config.depth == "estimator-per-bg"

    def origin(d) -> str:
        return "estimator" if per_bg_network else "sidecar" if d is not None else "ground-plane prior"

    bg = [
        {
            "index": i,
            "file": s.file,
            "sha256": s.sha256,
            "depth": origin(d),
            "ground_top": ground if origin(d) == "ground-plane prior" else 0,
        }
        for i, (s, d) in enumerate(zip(assets.bg_sources, assets.bg_depth))
    ]
    fg = [{"index": i, "file": s.file, "sha256": s.sha256} for i, s in enumerate(assets.fg_sources)]
    state = {"config": config.to_dict(), "sources": {"bg": bg, "fg": fg}}
    return json.loads(json.dumps({**state, **(network or {})}))  # as it reads back from disk


IDENTITY = ("config", "sources", "depth_model", "depth_scales")


def _same_run(recorded: dict, state: dict) -> bool:
    if "depth" in recorded and "fgbg_version" in recorded:  # dataset.json keeps the network under "depth"
        recorded = {**recorded, **{k: recorded["depth"].get(k) for k in ("depth_model", "depth_scales")}}
    return all(recorded.get(k) == state.get(k) for k in IDENTITY)


def prepare_out(out: Path, state: dict, overwrite: bool) -> str:
    """Check ``out`` against this run. Returns "new", "resume" or "complete".

    Raises:
        GenerateError: ``out`` holds another run (and not --overwrite), or foreign files.
    """
    out.mkdir(parents=True, exist_ok=True)
    recorded = None
    for path in (out / DATASET_JSON, out / WORK_DIR / "state.json"):
        if path.exists():
            recorded = json.loads(path.read_text())
            status = "complete" if path.name == DATASET_JSON else "resume"
            break
    if recorded is None:
        foreign = sorted(p.name for p in out.iterdir())
        if foreign:
            raise GenerateError(
                f"{out}: not empty and not an fgbg store ({', '.join(foreign[:3])}...);"
                " choose a new or empty folder for --out"
            )
        return "new"
    if _same_run(recorded, state):
        return status
    if not overwrite:
        raise GenerateError(
            f"{out}: holds a store made with a different config or different source images;"
            " use another --out, or --overwrite to replace it"
        )
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return "new"


def remove_temporaries(out: Path) -> None:
    """Leftovers of a killed run: files and folders named *.tmp below the store."""
    for path in sorted(out.rglob("*" + TMP_SUFFIX), reverse=True):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


# ---------------------------------------------------------------- assets


def write_assets(out: Path, assets: Assets, config: GenerateConfig) -> None:
    """assets/bg/*.jpg, assets/bg_depth/*.png (16-bit), assets/fg/*.png, assets/fg_mask/*.png."""
    n_bg, n_fg = len(assets.bg), len(assets.fg)
    prior = ground_plane_prior(config.size, config.horizon)
    for kind in ("bg", "bg_depth", "fg", "fg_mask"):
        (out / ASSETS_DIR / kind).mkdir(parents=True, exist_ok=True)
    for path, bg in zip(asset_paths(out, "bg", n_bg), assets.bg):
        atomic_write_bytes(path, codecs.encode_jpeg(bg, config.jpeg_quality))
    for path, depth in zip(asset_paths(out, "bg_depth", n_bg), assets.bg_depth):
        bg_map = prior if depth is None else depth
        atomic_write_bytes(path, codecs.encode_png_gray(quantize_depth(bg_map, BG_DEPTH_BITS)))
    for path, fg in zip(asset_paths(out, "fg", n_fg), assets.fg):
        atomic_write_bytes(path, codecs.encode_png(fg))
    for path, fg in zip(asset_paths(out, "fg_mask", n_fg), assets.fg):
        atomic_write_bytes(path, codecs.encode_png_gray(fg_mask(fg)))


# ---------------------------------------------------------------- workers

_renderer: Renderer | None = None


LAYERED_BATCH = 64  # samples rendered per call when no network is involved


def _init_worker(out: str, threads: int) -> None:
    global _renderer
    _renderer = Renderer.from_store(Path(out), threads)


def _render_shard(task: tuple[str, int, int, int]) -> tuple[int, dict, list[str]]:
    """Render and write one shard; returns (index, file record, manifest lines)."""
    out, index, start, stop = task
    r = _renderer
    plan = Plan.from_config(len(r.bg), len(r.fg), r.config)
    shard = Shard(index, start, stop)
    annotations: list[str] = []
    clipped = 0
    batch = r.config.depth_batch if r.estimator is not None else LAYERED_BATCH

    def samples():
        nonlocal clipped
        refs = list(plan.samples(shard))
        for i in range(0, len(refs), batch):
            rendered, n = r.render_batch(refs[i : i + batch])
            clipped += n
            for ref, members in zip(refs[i : i + batch], rendered):
                annotations.append(members["json"].decode())
                yield ref.key, members

    record = write_shard(Path(out), r.config.format, shard.name, samples())
    return index, {**record, "depth_clipped": clipped}, annotations


def _part_path(out: Path, shard: Shard) -> Path:
    return out / WORK_DIR / f"{shard.name}.json"


# ---------------------------------------------------------------- the whole job


def prepare_network_depth(config: GenerateConfig, assets: Assets) -> dict | None:
    """Estimator sources: load the network (errors before any write) and run it once per bg.

    ``estimator-per-bg`` replaces each bg's depth map by the network's, scaled to [0, 1];
    ``estimator`` records the per-bg scales its workers apply to every composite.
    Returns the state entries that identify the network and its scales.
    """
    if config.depth == "layered":
        return None
    try:
        estimator = load_estimator(config.depth_model, config.depth_preset or None, worker_threads(1))
        raw = [estimator(np.stack(assets.bg[i : i + config.depth_batch]))
               for i in range(0, len(assets.bg), config.depth_batch)]  # fmt: skip
    except EstimatorError as e:
        raise GenerateError(str(e)) from None
    raw_maps = [m for chunk in raw for m in chunk]
    scales = bg_scales(raw_maps, config.depth_norm)
    if config.depth_norm == "image":
        scales = [image_range(m) for m in raw_maps]
    if config.depth == "estimator-per-bg":
        assets.bg_depth = [apply_scale(m, lo, hi)[0] for m, (lo, hi) in zip(raw_maps, scales)]
    return {"depth_model": estimator.description, "depth_scales": [[round(lo, 7), round(hi, 7)] for lo, hi in scales]}


def report_bad_input(assets: Assets, on_bad: str, warn: Callable[[str], None]) -> None:
    """--on-bad fail: raise with every bad file, one line each; skip: warn and carry on."""
    lines = [str(b) for b in assets.bad]
    if lines and on_bad == "fail":
        raise GenerateError(
            "\n".join(lines + [f"{len(lines)} bad input file(s); fix or remove them, or pass --on-bad skip"])
        )
    for line in lines:
        warn(f"skipped {line}")
    for kind, items in (("background", assets.bg), ("foreground", assets.fg)):
        if not items:
            raise GenerateError(f"no usable {kind} image left after skipping bad files")


def generate(
    bg_dir: Path,
    fg_dir: Path,
    out: Path,
    config: GenerateConfig,
    workers: int | None = None,
    on_bad: str = "fail",
    overwrite: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] = print,
) -> Summary:
    """Make (or resume, or confirm) the store ``out`` from two folders of images.

    Raises:
        GenerateError: bad input, a foreign or mismatching ``out``, a full disk.
    """
    out, started = Path(out), time.perf_counter()
    workers = workers or os.cpu_count() or 1
    try:
        assets = load_assets(Path(bg_dir), Path(fg_dir), config.size, config.fg_size, config.bg_fit)
    except BadInput as e:
        raise GenerateError(str(e)) from None
    report_bad_input(assets, on_bad, warn)
    for line in assets.warnings:
        warn(f"warning: {line}")
    state = make_state(config, assets, prepare_network_depth(config, assets))
    plan = Plan.from_config(len(assets.bg), len(assets.fg), config)
    shards = plan.shards()
    try:
        status = prepare_out(out, state, overwrite)
        if status == "complete":
            meta = json.loads((out / DATASET_JSON).read_text())
            return Summary(out, len(plan), len(shards), meta["total_bytes"], 0.0, len(plan))
        remove_temporaries(out)
        (out / WORK_DIR).mkdir(exist_ok=True)
        write_assets(out, assets, config)
        atomic_write_json(out / WORK_DIR / "state.json", state)
        todo = [s for s in shards if not _part_path(out, s).exists()]
        resumed = len(plan) - sum(len(s) for s in todo)
        threads = worker_threads(min(workers, max(1, len(todo))))
        finished = map_shards(
            _render_shard, [(str(out), s.index, s.start, s.stop) for s in todo], weights=[len(s) for s in todo],
            workers=workers, progress=progress, initializer=_init_worker, initargs=(str(out), threads), done=resumed,
        )  # fmt: skip
        for index, record, lines in finished:
            atomic_write_json(_part_path(out, shards[index]), {**record, "manifest": lines})
        total_bytes = finalize(out, plan, shards, state)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise GenerateError(
                f"{e.filename or out}: disk full; free some space and rerun the same command to resume"
            ) from None
        raise
    return Summary(out, len(plan), len(shards), total_bytes, time.perf_counter() - started, resumed)


def finalize(out: Path, plan: Plan, shards: list[Shard], state: dict) -> int:
    """Write manifest.jsonl and dataset.json from the shard records, then drop .work."""
    records = []
    with open(out / (MANIFEST + TMP_SUFFIX), "w") as manifest:
        for shard in shards:
            part = json.loads(_part_path(out, shard).read_text())
            manifest.writelines(line + "\n" for line in part.pop("manifest"))
            records.append({"name": shard.name, "index": shard.index, "start": shard.start, **part})
    os.replace(out / (MANIFEST + TMP_SUFFIX), out / MANIFEST)
    config = GenerateConfig.from_dict(state["config"])
    total_bytes = sum(r["bytes"] for r in records)
    atomic_write_json(out / DATASET_JSON, dataset_json(config, plan, state, records, total_bytes))
    shutil.rmtree(out / WORK_DIR)
    return total_bytes


def depth_description(config: GenerateConfig, state: dict, clipped_fraction: float) -> dict:
    """What dataset.json says about depth: where it came from and on which scale, honestly."""
    top = (1 << config.depth_bits) - 1
    origins = [s["depth"] for s in state["sources"]["bg"]]
    d = {"source": config.depth, "bits": config.depth_bits, "near": "bright", "perspective": config.perspective}
    if config.depth == "estimator":
        scale = {
            "bg": "one scale per bg, from the network's output on that bg (1st/99th percentiles); see depth_scales",
            "dataset": "one scale for the whole store, the union of the bgs' 1st/99th percentiles",
            "image": "per-image min-max, as the seed notebooks did: NO common scale between images",
        }[config.depth_norm]
        return {**d, "rule": "the network run on every composite", "norm": config.depth_norm,
                "scale": f"inverse depth in [0, 1] = PNG value / {top}; {scale}",
                "per_image_minmax": config.depth_norm == "image", "clipped_fraction": clipped_fraction,
                "depth_model": state["depth_model"], "depth_scales": state["depth_scales"]}  # fmt: skip
    d.update(
        bg_maps={o: origins.count(o) for o in sorted(set(origins))},
        rule="bg inverse-depth map; the fg's pixels take the bg's value at the fg's foot point",
        scale=f"inverse depth in [0, 1] = PNG value / {top}, one scale for the whole store",
    )
    if config.depth == "estimator-per-bg":
        d.update(norm=config.depth_norm, depth_model=state["depth_model"], depth_scales=state["depth_scales"])
    else:
        d.update(horizon=config.horizon)
    return d


def clipped_fraction(shards: list[dict], samples: int, size: int) -> float:
    return sum(s.get("depth_clipped", 0) for s in shards) / max(1, samples * size * size)


def dataset_json(config: GenerateConfig, plan: Plan, state: dict, shards: list[dict], total_bytes: int) -> dict:
    return {
        "fgbg_version": __version__,
        "format": config.format,
        "config": state["config"],
        "seed": config.seed,
        "counts": {
            "bg": plan.n_bg,
            "fg": plan.n_fg,
            "flips": plan.flips,
            "placements": plan.placements,
            "samples": len(plan),
            "shards": len(shards),
        },
        "key": "b{bg}_f{fg}_{flip}_{k}, zero-padded",
        "members": list(MEMBERS),
        "depth": depth_description(config, state, clipped_fraction(shards, len(plan), config.size)),
        "sources": state["sources"],
        "shards": shards,
        "total_bytes": total_bytes,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "simplejpeg": simplejpeg.__version__,
        },
    }
