"""The end of a run: each shard's record in ``.work/``, then manifest.jsonl and dataset.json.

While a run goes on, the parent records every finished shard (its files' sha256, bytes,
count and manifest lines) in ``.work/shard-NNNNNN.json``; a rerun skips recorded shards.
When all are recorded, :func:`finalize` writes ``manifest.jsonl``, then ``dataset.json``
(last: a store is complete exactly when it exists), then removes ``.work/``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import PIL
import simplejpeg

from fgbg import __version__
from fgbg.config import GenerateConfig
from fgbg.store.layout import DATASET_JSON, MANIFEST, WORK_DIR, atomic_file, atomic_write_json, remove, store_members
from fgbg.store.plan import Plan, Shard


def record_path(out: Path, shard: Shard) -> Path:
    return Path(out) / WORK_DIR / f"{shard.name}.json"


def write_record(out: Path, shard: Shard, record: dict, manifest_lines: list[str]) -> None:
    """Durably note a committed shard: from now on a rerun keeps it."""
    atomic_write_json(record_path(out, shard), {**record, "manifest": manifest_lines})


def finalize(out: Path, plan: Plan, shards: list[Shard], state: dict) -> int:
    """Write manifest.jsonl and dataset.json from the shard records, then drop .work. Returns the bytes."""
    records = []
    with atomic_file(out / MANIFEST) as manifest:
        for shard in shards:
            part = json.loads(record_path(out, shard).read_text())
            manifest.write("".join(line + "\n" for line in part.pop("manifest")).encode())
            records.append({"name": shard.name, "index": shard.index, "start": shard.start, **part})
    config = GenerateConfig.from_dict(state["config"])
    total_bytes = sum(r["bytes"] for r in records)
    atomic_write_json(out / DATASET_JSON, dataset_json(config, plan, state, records, total_bytes))
    remove(out / WORK_DIR)
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
    if state.get("bg_depth_set"):
        d.update(sidecars=state["bg_depth_set"])
    if config.depth == "estimator-per-bg":
        d.update(norm=config.depth_norm, depth_model=state["depth_model"], depth_scales=state["depth_scales"])
    else:
        d.update(horizon=config.horizon)
    return d


def clipped_fraction(shards: list[dict], samples: int, frame: tuple[int, int]) -> float:
    """The share of depth pixels clipped to the store's scale, over every (H, W) frame."""
    return sum(s.get("depth_clipped", 0) for s in shards) / max(1, samples * frame[0] * frame[1])


def dataset_json(config: GenerateConfig, plan: Plan, state: dict, shards: list[dict], total_bytes: int) -> dict:
    return {
        "fgbg_version": __version__,
        "format": config.format,
        "config": state["config"],
        "frame": {"width": config.frame[1], "height": config.frame[0]},  # of every image; config: size (W) and height (0: square)
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
        "members": list(store_members(state["config"])),
        "depth": depth_description(config, state, clipped_fraction(shards, len(plan), config.frame)),
        "sources": state["sources"],
        **{k: state[k] for k in ("categories", "fg_categories", "objects_version") if k in state},
        "shards": shards,
        "total_bytes": total_bytes,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "simplejpeg": simplejpeg.__version__,
        },
    }
