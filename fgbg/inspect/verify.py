"""Prove a store whole, or list every problem, one line each.

Checks, for all three formats (wds, folder, zip):

- ``dataset.json`` reads, and its counts equal the plan (bg x fg x flips x placements);
- every shard file exists and its sha256 equals the one in ``dataset.json`` (a flipped
  byte, a truncated or missing shard); for the folder format, the digest over its files;
  a wds shard's member index (``.idx``) agrees with the offsets in its tar;
- every planned key has all its members (fg_bg.jpg, mask.png, depth.png, json), and no
  unplanned sample or member is there;
- each member decodes to the right size and mode (RGB JPEG; 8-bit grey mask; 8 or
  16-bit grey depth as recorded; JSON naming its key); masks are strictly 0/255;
- with several objects per composite: instances.png is 8-bit grey (16-bit above 255 objects)
  and agrees with the union mask.png and with each object's RLE masks in the json; areas
  equal pixel counts, boxes are the tight boxes of their masks, each visible mask lies inside
  its full mask (:func:`fgbg.inspect.annotations.check_objects`);
- with variety (``--rotate``, ``--truncate``, ``--blend``, ``--light``, ``--harmonize``,
  ``--distractors``): each object's recorded draws are ones its config could make, and each
  distractor record is whole and in the frame (:func:`fgbg.inspect.variety.check_variety`);
- ``manifest.jsonl`` lists the planned keys in order; the prepared assets decode;
- no stray or temporary files (``*.tmp``, ``.work/``, anything generate did not write).

Shards are read by :meth:`fgbg.store.read.StoreReader.scan_shard` (every member, as far as
each file goes) on spawned worker processes; each opens its own files.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.engine import DEFAULT_RAY_ADDRESS, map_shards, visible_store
from fgbg.errors import UserError
from fgbg.inspect.annotations import check_objects
from fgbg.inspect.variety import check_variety
from fgbg.make.categories import store_categories
from fgbg.store.layout import (
    ASSETS_DIR, DATASET_JSON, INSTANCES, MANIFEST, MEMBERS, SHARDS_DIR, TMP_SUFFIX, WORK_DIR, asset_paths, sha256_file,
)  # fmt: skip
from fgbg.store.lock import LOCK_FILE
from fgbg.store.plan import Plan
from fgbg.store.read import DECODE_ERRORS, StoreReader

# Names at a store's root written by `fgbg stats`, `fgbg card` and `fgbg show`, and the write lock.
DERIVED = ("stats.json", "README.md", "previews", ".stats_cache", LOCK_FILE)
MAX_LISTED = 5  # list at most this many missing/unexpected keys of one shard by name


class VerifyError(UserError):
    """A store is not whole; ``str()`` is one line per problem."""


@dataclass
class Report:
    store: Path
    samples: int = 0  # samples decoded and checked
    shards: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.store}: whole: {self.samples} samples in {self.shards} shards, every check passed"
        return "\n".join(self.problems + [f"{self.store}: {len(self.problems)} problem(s) found"])


# ---------------------------------------------------------------- one sample

DEPTH_MODES = {8: ("L",), 16: ("I;16", "I;16B", "I;16L", "I")}


def check_member(suffix: str, data: bytes, key: str, frame: tuple[int, int], depth_bits: int, id_bits: int = 8) -> str | None:
    """What is wrong with one member of a sample, or None; ``frame`` is the store's (H, W).

    fg_bg.jpg: an RGB JPEG of (H, W); mask.png: 8-bit grey (H, W), values only
    0 and 255; depth.png: grey (H, W) at ``depth_bits``; instances.png: grey (H, W)
    at ``id_bits``; json: an object naming ``key``.
    """
    height, width = frame
    try:
        if suffix == "fg_bg.jpg":
            img = simplejpeg.decode_jpeg(data, colorspace="RGB")
            if img.shape != (height, width, 3):
                return f"is {img.shape[1]}x{img.shape[0]}, expected {width}x{height}"
            return None
        if suffix == "json":
            ann = json.loads(data)
            return None if isinstance(ann, dict) and ann.get("key") == key else "does not name its key"
        img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:  # Pillow's message names a BytesIO object, not the damage
        return f"does not decode (not an image, or cut short: {len(data)} bytes)"
    except DECODE_ERRORS as e:  # simplejpeg/Pillow/json decode errors
        return f"does not decode ({str(e).strip() or type(e).__name__})"
    if img.size != (width, height):
        return f"is {img.size[0]}x{img.size[1]}, expected {width}x{height}"
    if suffix == "mask.png":
        if img.mode != "L":
            return f"mode {img.mode}, expected 8-bit grey (L)"
        counts = np.asarray(img.histogram())
        other = int(counts[1:255].sum())
        if other:
            values = np.flatnonzero(counts[1:255])[:3] + 1
            return f"not binary: {other} pixel(s) neither 0 nor 255 (e.g. {', '.join(map(str, values))})"
    if suffix == "depth.png" and img.mode not in DEPTH_MODES[depth_bits]:
        return f"mode {img.mode}, expected {depth_bits}-bit grey"
    if suffix == INSTANCES and img.mode not in DEPTH_MODES[id_bits]:
        return f"mode {img.mode}, expected {id_bits}-bit grey"
    return None


def check_sample_objects(members: dict[str, bytes], n_categories: int) -> list[tuple[str, str]]:
    """(suffix, problem) of a several-object sample whose members each decode: its json objects
    against its instances.png and mask.png (see :func:`fgbg.inspect.annotations.check_objects`)."""
    try:
        ann = json.loads(members["json"])
        ids = codecs.decode_png_gray(members[INSTANCES])
        mask = codecs.decode_png_gray(members["mask.png"])
    except DECODE_ERRORS as e:  # reported by check_member already
        return [("json", f"does not decode ({e})")]
    return check_objects(ann, ids, mask, n_categories)


def check_sample_variety(members: dict[str, bytes], config: GenerateConfig, mode: str, distractor_files: set[str] | None) -> list[str]:
    """Problems of a several-object sample's recorded draws (see :func:`fgbg.inspect.variety.check_variety`)."""
    try:
        ann = json.loads(members["json"])
    except DECODE_ERRORS:  # reported by check_member already
        return []
    return check_variety(ann, config, mode, distractor_files)


def distractor_files(meta: dict) -> set[str] | None:
    """The distractor cut-outs dataset.json names (None where it names none: not checked)."""
    sources = meta.get("sources", {}).get("distractor")
    return None if sources is None else {s["file"] for s in sources}


# ---------------------------------------------------------------- one shard

Locate = Callable[[str, str], str]  # (key, suffix) -> where the member lives, for messages


def locator(reader: StoreReader, shard: int) -> Locate:
    """Where a member of ``shard`` lives, relative to the store (verify's problem lines)."""
    if reader.format == "wds":
        rel = reader.tar_of(shard)
        return lambda key, suffix: f"{rel}: {key}.{suffix}"
    group = reader.group(shard)
    if reader.format == "folder":
        return lambda key, suffix: f"{MEMBERS[suffix][0]}/{group}/{key}{MEMBERS[suffix][1]}"
    return lambda key, suffix: f"{MEMBERS[suffix][0]}/{group}.zip: {key}{MEMBERS[suffix][1]}"


def check_files(store: Path, shard: dict, fmt: str) -> list[str]:
    """Every file of the shard (and its .idx) exists and matches its sha256 (folder: checked by the reader)."""
    if fmt == "folder":
        return []
    problems = []
    for rel, digest in {**shard["files"], **shard.get("idx", {})}.items():
        path = store / rel
        if not path.is_file():
            problems.append(f"{rel}: missing ({shard['name']}, {shard['count']} samples)")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: sha256 differs from dataset.json (changed or truncated; {path.stat().st_size} bytes)")
    return problems


def _keys_line(where: str, what: str, keys: list[str]) -> str:
    named = ", ".join(keys[:MAX_LISTED]) + (f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")
    return f"{where}: {len(keys)} {what} sample(s): {named}"


def verify_shard(task: tuple[str, int]) -> tuple[int, int, list[str]]:
    """Worker: (store, shard index) -> (index, samples checked, problems)."""
    store, index = visible_store(task[0], DATASET_JSON), task[1]
    reader = StoreReader(store, json.loads((store / DATASET_JSON).read_text()))
    meta, config, plan = reader.meta, reader.config, reader.plan
    shard = meta["shards"][index]
    planned = plan.shards()[index]
    where = ", ".join(shard["files"]) if meta["format"] != "wds" else reader.tar_of(index)
    problems = check_files(store, shard, meta["format"])
    scan = reader.scan_shard(index)
    samples, locate = scan.samples, locator(reader, index)
    problems += scan.problems
    modes = {ref.key: ref.mode for ref in plan.samples(planned)}  # --blend-each: each key's blend mode
    keys = list(modes)
    absent = [k for k in keys if k not in samples]
    if absent and (samples or meta["format"] != "wds"):
        problems.append(_keys_line(where, "missing", absent))
    unplanned = sorted(set(samples) - set(keys))
    if unplanned:
        problems.append(_keys_line(where, "unplanned", unplanned))
    if len(samples) != shard["count"] and not absent and not unplanned:
        problems.append(f"{where}: {len(samples)} samples, dataset.json says {shard['count']}")
    checked = 0
    id_bits = 16 if reader.objects > 255 else 8  # instance ids: see fgbg.make.occlusion.id_dtype
    n_categories = len(store_categories(meta).names)
    distractors = distractor_files(meta)
    for key in keys:
        members = samples.get(key)
        if members is None:
            continue
        checked += 1
        whole = True
        for suffix in reader.suffixes:
            if suffix not in members:
                problems.append(f"{locate(key, suffix)}: missing member")
                whole = False
                continue
            wrong = check_member(suffix, members[suffix], key, config.frame, config.depth_bits, id_bits)
            if wrong:
                problems.append(f"{locate(key, suffix)}: {wrong}")
                whole = False
        for suffix in sorted(set(members) - set(reader.suffixes)):
            problems.append(f"{locate(key, suffix)}: unexpected member")
        if whole and INSTANCES in reader.suffixes:
            problems += [f"{locate(key, suffix)}: {wrong}" for suffix, wrong in check_sample_objects(members, n_categories)]
            problems += [f"{locate(key, 'json')}: {wrong}" for wrong in check_sample_variety(members, config, modes[key], distractors)]
    return index, checked, problems


# ---------------------------------------------------------------- the whole store


def check_counts(meta: dict, plan: Plan) -> list[str]:
    """dataset.json's counts and shard records against the plan its config makes."""
    problems = []
    counts = meta["counts"]
    if counts["samples"] != len(plan):
        problems.append(f"{DATASET_JSON}: counts.samples is {counts['samples']}, the plan has {len(plan)}")
    planned = plan.shards()
    if len(meta["shards"]) != len(planned) or counts["shards"] != len(planned):
        problems.append(
            f"{DATASET_JSON}: {len(meta['shards'])} shard records (counts.shards {counts['shards']}),"
            f" the plan has {len(planned)}"
        )
    for record, shard in zip(meta["shards"], planned):
        if (record["index"], record["start"], record["count"]) != (shard.index, shard.start, len(shard)):
            problems.append(f"{DATASET_JSON}: shard {record['name']} covers samples other than the plan's")
    total = sum(r["count"] for r in meta["shards"])
    if total != counts["samples"]:
        problems.append(f"{DATASET_JSON}: shard counts add up to {total}, counts.samples is {counts['samples']}")
    return problems


def check_manifest(store: Path, plan: Plan) -> list[str]:
    """manifest.jsonl holds one line per planned sample, in plan order."""
    path = store / MANIFEST
    if not path.is_file():
        return [f"{MANIFEST}: missing"]
    n = 0
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                key = json.loads(line)["key"]
            except (ValueError, KeyError, TypeError):
                return [f"{MANIFEST}: line {n} is not a sample annotation"]
            if n > len(plan) or key != plan[n - 1].key:
                return [f"{MANIFEST}: line {n} is {key}, the plan says {plan[n - 1].key if n <= len(plan) else 'no more lines'}"]
    if n != len(plan):
        return [f"{MANIFEST}: {n} lines, the plan has {len(plan)} samples"]
    return []


def check_assets(store: Path, meta: dict, frame: tuple[int, int]) -> list[str]:
    """assets/: bg (RGB JPEG of the store's frame (H, W)), bg_depth (16-bit grey, (H, W)), fg (RGBA), fg_mask (0/255)."""
    height, width = frame
    problems = []
    n = {"bg": meta["counts"]["bg"], "bg_depth": meta["counts"]["bg"], "fg": meta["counts"]["fg"]}
    n["fg_mask"] = n["fg"]
    expect = {"bg": ("RGB", (width, height)), "bg_depth": (DEPTH_MODES[16], (width, height)), "fg": ("RGBA", None), "fg_mask": ("L", None)}
    for kind, (modes, wh) in expect.items():
        for path in asset_paths(store, kind, n[kind]):
            rel = path.relative_to(store).as_posix()
            if not path.is_file():
                problems.append(f"{rel}: missing")
                continue
            try:
                img = Image.open(path)
                img.load()
            except (OSError, SyntaxError, ValueError) as e:
                problems.append(f"{rel}: does not decode ({e})")
                continue
            if img.mode not in modes:
                problems.append(f"{rel}: mode {img.mode}, expected {modes}")
            elif wh is not None and img.size != wh:
                problems.append(f"{rel}: is {img.size[0]}x{img.size[1]}, expected {wh[0]}x{wh[1]}")
            elif kind == "fg_mask" and int(np.asarray(img.histogram())[1:255].sum()):
                problems.append(f"{rel}: not binary")
    return problems


def expected_files(store: Path, meta: dict) -> tuple[set[str], set[str]]:
    """(files, folders) a complete store holds, as paths relative to it (posix)."""
    files = {DATASET_JSON, MANIFEST}
    folders = {ASSETS_DIR, SHARDS_DIR}
    n = {"bg": meta["counts"]["bg"], "bg_depth": meta["counts"]["bg"], "fg": meta["counts"]["fg"]}
    n["fg_mask"] = n["fg"]
    if meta["sources"].get("distractor"):
        n["distractor"] = len(meta["sources"]["distractor"])
    for kind, count in n.items():
        folders.add(f"{ASSETS_DIR}/{kind}")
        files.update(p.relative_to(store).as_posix() for p in asset_paths(store, kind, count))
    for shard in meta["shards"]:
        for rel in {**shard["files"], **shard.get("idx", {})}:
            parts = rel.rstrip("/").split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            (folders if rel.endswith("/") else files).add(rel.rstrip("/"))
    return files, folders


def find_strays(store: Path, meta: dict) -> list[str]:
    """Temporary files, an unfinished run's .work/, and anything generate did not write."""
    files, folders = expected_files(store, meta)
    sample_folders = {rel.rstrip("/") for shard in meta["shards"] for rel in shard["files"] if rel.endswith("/")}
    problems = []
    for root, dirs, names in os.walk(store):
        rel_root = Path(root).relative_to(store).as_posix()
        prefix = "" if rel_root == "." else rel_root + "/"
        for name in sorted(dirs):
            rel = prefix + name
            if name.endswith(TMP_SUFFIX):
                problems.append(f"{rel}/: temporary folder left by an interrupted write; remove it")
            elif rel == WORK_DIR:
                problems.append(f"{rel}/: an unfinished generation's state; rerun `fgbg generate` or remove it")
            elif rel in folders:
                continue  # descend
            elif not (not prefix and name in DERIVED):
                problems.append(f"{rel}/: stray folder, not part of the store")
            dirs.remove(name)  # don't descend into temporary, derived or stray folders
        for name in sorted(names):
            rel = prefix + name
            if name.endswith(TMP_SUFFIX):
                problems.append(f"{rel}: temporary file left by an interrupted write; remove it")
            elif rel in files or (not prefix and name in DERIVED) or rel_root in sample_folders:
                continue  # KIND/bNNN/KEY.ext of the folder format: checked by the shard check
            else:
                problems.append(f"{rel}: stray file, not part of the store")
    return problems


def verify(
    store: Path, workers: int | None = None, progress: bool | None = False,
    engine: str = "local", ray_address: str = DEFAULT_RAY_ADDRESS,
) -> Report:  # fmt: skip
    """Check a store (any format); the report lists every problem, one line each.

    Args:
        store: the store folder.
        workers: processes for the shard checks (None = CPU count, 0 = this process).
        progress: tqdm bar over the samples checked.
        engine, ray_address: where the shards are checked ("local" processes or "ray"
            tasks, see :func:`fgbg.engine.map_shards`); the findings are the same.
    """
    store = Path(store)
    report = Report(store)
    path = store / DATASET_JSON
    if not path.is_file():
        report.problems.append(f"{path}: missing; not a complete fgbg store (an unfinished run? rerun `fgbg generate`)")
        return report
    try:
        meta = json.loads(path.read_text())
        config = GenerateConfig.from_dict(meta["config"])
        plan = Plan.from_config(meta["counts"]["bg"], meta["counts"]["fg"], config)
    except (ValueError, KeyError, TypeError) as e:
        report.problems.append(f"{path}: unreadable ({e})")
        return report
    report.shards = len(meta["shards"])
    report.problems += check_counts(meta, plan)
    report.problems += check_manifest(store, plan)
    report.problems += check_assets(store, meta, config.frame)
    report.problems += find_strays(store, meta)
    n_planned = len(plan.shards())
    tasks = [(str(store), i) for i in range(min(len(meta["shards"]), n_planned))]
    weights = [meta["shards"][i]["count"] for i, _ in enumerate(tasks)]
    results = sorted(map_shards(verify_shard, tasks, weights, workers, progress, engine=engine,
                                ray_address=ray_address, desc="verify"))  # fmt: skip
    for _, checked, problems in results:
        report.samples += checked
        report.problems += problems
    return report
