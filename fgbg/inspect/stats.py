"""Exact statistics of a store: integer histograms per kind and channel, summed.

The core is pure: :func:`histogram` counts every value of an image per channel (256
bins for uint8, 65536 for uint16) and :func:`channel_summary` turns summed counts into
mean, std (population), min and max on the [0, 1] scale that ``ToTensor`` gives. Counts
merge by addition, so shards, workers and reruns combine exactly: there is no
"mean of per-image std" anywhere.

The shell (:func:`compute_stats`) reads the store: the prepared assets (bg, fg, fg_mask)
in this process, the samples (fg_bg, mask, depth) shard by shard on spawned workers,
with a progress bar and a per-shard cache in ``STORE/.stats_cache/`` keyed by the
shard's sha256 from ``dataset.json``, so a rerun after a resumed generation only reads
the new shards. :func:`write_stats` writes ``STORE/stats.json``::

    {"kinds": {"fg_bg": {"count": int, "channels": int, "height": int, "width": int,
                         "format": "jpg", "bytes": int, "mean": [..], "std": [..],
                         "min": [..], "max": [..], ...}, ...},
     "total_bytes": int, "samples": int,
     "objects": {"images": int, "instances": int, "per_image": {"K": composites with K objects},
                 "categories": [{"id", "name", "instances", "extra", "cutouts"}],
                 "visible": {"bins": [..], "instances": [..]},
                 "hidden_by_objects": int, "dropped": int}}

The objects are counted from ``manifest.jsonl`` (:func:`manifest_counts`); a store with one
object per composite counts its fg's category and its ``visible`` fraction.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from fgbg import __version__, codecs
from fgbg.errors import NotFound
from fgbg.engine import DEFAULT_RAY_ADDRESS, map_shards, visible_store
from fgbg.inspect.annotations import ObjectCounts, count_objects
from fgbg.make.categories import store_categories
from fgbg.store.layout import DATASET_JSON, MANIFEST, atomic_write_bytes, atomic_write_json, read_dataset_json
from fgbg.store.lock import store_lock
from fgbg.store.owned import check_files_ours, is_fgbg_json, theirs_among
from fgbg.store.read import StoreReader, decoding

STATS_JSON = "stats.json"
CACHE_DIR = ".stats_cache"
CACHE_VERSION = 1  # bump when what a shard's cache holds changes


@dataclass(frozen=True)
class KindSpec:
    """What one kind of image is: where it lives, its file type and channels."""

    where: str  # "assets" (one file per prepared input) or "samples" (one member per sample)
    source: str  # asset folder name, or sample member suffix
    format: str  # file type: "jpg" or "png"
    channels: tuple[str, ...]  # channel names, in array order
    binary: bool = False  # a 0/255 mask: report the foreground fraction
    what: str = ""


KINDS: dict[str, KindSpec] = {
    "bg": KindSpec("assets", "bg", "jpg", ("R", "G", "B"), what="backgrounds, resized to the store size"),
    "fg": KindSpec(
        "assets", "fg", "png", ("R", "G", "B", "A"), what="foreground cut-outs (RGB over pixels with alpha > 0; A over all)"
    ),
    "fg_mask": KindSpec("assets", "fg_mask", "png", ("mask",), binary=True, what="foreground alpha thresholded to 0/255"),
    "fg_bg": KindSpec("samples", "fg_bg.jpg", "jpg", ("R", "G", "B"), what="composites: a fg pasted on a bg"),
    "mask": KindSpec("samples", "mask.png", "png", ("mask",), binary=True, what="the composite's fg mask, 0/255"),
    "depth": KindSpec("samples", "depth.png", "png", ("inverse depth",), what="the composite's inverse depth, near = bright"),
}
SAMPLE_KINDS = tuple(k for k, s in KINDS.items() if s.where == "samples")
ASSET_KINDS = tuple(k for k, s in KINDS.items() if s.where == "assets")

_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


# ---------------------------------------------------------------- pure core


def histogram(img: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Exact per-channel counts of every value of an image.

    Args:
        img: uint8 or uint16, (H, W) or (H, W, C).
        where: optional bool (H, W): count only these pixels.

    Returns:
        int64 (C, 256) for uint8, (C, 65536) for uint16; ``[c, v]`` = pixels of channel c
        equal to v.

    Examples:
        >>> histogram(np.array([[0, 255], [255, 255]], np.uint8))[0, [0, 255]].tolist()
        [1, 3]
    """
    if img.dtype not in (np.uint8, np.uint16) or img.ndim not in (2, 3):
        raise ValueError(f"expected a uint8/uint16 (H, W[, C]) image, got {img.dtype} {img.shape}")
    img3 = img[..., None] if img.ndim == 2 else img
    h, w, c = img3.shape
    bins = 256 if img.dtype == np.uint8 else 65536
    if where is None and bins == 256 and c in _PIL_MODES and img3.flags.c_contiguous:
        # Pillow counts all bands in one C pass: ~2x faster than np.bincount here.
        mode = _PIL_MODES[c]
        counts = Image.frombuffer(mode, (w, h), img3, "raw", mode, 0, 1).histogram()
        return np.asarray(counts, np.int64).reshape(c, bins)
    pixels = img3.reshape(-1, c)
    if where is not None:
        pixels = pixels[where.reshape(-1)]
    index = pixels.astype(np.intp) + np.arange(c, dtype=np.intp) * bins
    return np.bincount(index.reshape(-1), minlength=c * bins).astype(np.int64).reshape(c, bins)


def channel_summary(hist: np.ndarray) -> dict[str, list[float]]:
    """Mean, population std, min and max per channel, on the [0, 1] scale.

    Args:
        hist: int (C, B) counts, B = 256 (values / 255) or 65536 (values / 65535).

    Returns:
        {"mean", "std", "min", "max"}: lists of C floats (None for a channel with no pixels).

    Examples:
        >>> s = channel_summary(np.array([[1, 0, 0, 1]]))
        >>> [round(s["mean"][0], 6), round(s["std"][0], 6), s["min"][0], s["max"][0]]
        [0.5, 0.5, 0.0, 1.0]
    """
    hist = np.asarray(hist, np.int64)
    bins = hist.shape[1]
    values = np.arange(bins, dtype=np.float64) / (bins - 1)
    out: dict[str, list] = {"mean": [], "std": [], "min": [], "max": []}
    for row in hist:
        n = int(row.sum())
        if n == 0:
            for k in out:
                out[k].append(None)
            continue
        mean = float(row @ values) / n
        var = float(row @ (values - mean) ** 2) / n
        nonzero = np.flatnonzero(row)
        out["mean"].append(mean)
        out["std"].append(var**0.5)
        out["min"].append(float(values[nonzero[0]]))
        out["max"].append(float(values[nonzero[-1]]))
    return out


def foreground_fraction(hist: np.ndarray) -> float:
    """Fraction of non-zero pixels of a one-channel mask histogram (C=1, B)."""
    n = int(hist[0].sum())
    return (n - int(hist[0, 0])) / n if n else 0.0


@dataclass
class KindStats:
    """Summed histograms and sizes of one kind; ``a + b`` merges two parts exactly."""

    kind: str
    bits: int = 8  # 8 or 16 bits per value
    hist: np.ndarray | None = None  # int64 (C, 2**bits)
    count: int = 0  # images
    bytes: int = 0  # encoded bytes of those images
    min_hw: tuple[int, int] = (0, 0)  # smallest (height, width) seen
    max_hw: tuple[int, int] = (0, 0)  # largest (height, width) seen

    def add(self, hist: np.ndarray, shape: tuple[int, ...], nbytes: int) -> None:
        """Add one image's histogram (C, B), its array shape and its encoded size."""
        bits = 8 if hist.shape[1] == 256 else 16
        if self.hist is None:
            self.hist, self.bits = hist.astype(np.int64, copy=True), bits
        elif bits != self.bits:
            # 8-bit and 16-bit images of one kind: widen the 8-bit counts to 16 bits
            self.hist, hist = _widen(self.hist), _widen(hist)
            self.bits = 16
            self.hist += hist
        else:
            self.hist += hist
        hw = (int(shape[0]), int(shape[1]))
        self.min_hw = hw if self.count == 0 else (min(self.min_hw[0], hw[0]), min(self.min_hw[1], hw[1]))
        self.max_hw = (max(self.max_hw[0], hw[0]), max(self.max_hw[1], hw[1]))
        self.count += 1
        self.bytes += nbytes

    def __add__(self, other: "KindStats") -> "KindStats":
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        a, b = (self.hist, other.hist) if self.bits == other.bits else (_widen(self.hist), _widen(other.hist))
        return KindStats(
            self.kind,
            max(self.bits, other.bits),
            a + b,
            self.count + other.count,
            self.bytes + other.bytes,
            (min(self.min_hw[0], other.min_hw[0]), min(self.min_hw[1], other.min_hw[1])),
            (max(self.max_hw[0], other.max_hw[0]), max(self.max_hw[1], other.max_hw[1])),
        )

    def summary(self) -> dict:
        """This kind's entry of stats.json."""
        spec = KINDS[self.kind]
        entry = {
            "count": self.count,
            "channels": len(spec.channels),
            "height": self.max_hw[0],
            "width": self.max_hw[1],
            "format": spec.format,
            "bytes": self.bytes,
        }
        if self.count == 0:
            return entry
        entry.update(channel_summary(self.hist))
        entry["channel_names"] = list(spec.channels)
        entry["bits"] = self.bits
        entry["pixels"] = int(self.hist[0].sum())
        if self.min_hw != self.max_hw:
            entry["min_height"], entry["min_width"] = self.min_hw
        if spec.binary:
            entry["fg_fraction"] = foreground_fraction(self.hist)
        return entry


def _widen(hist: np.ndarray) -> np.ndarray:
    """8-bit counts (C, 256) -> 16-bit counts (C, 65536): v -> v * 257 (same [0, 1] value)."""
    if hist.shape[1] == 65536:
        return hist
    wide = np.zeros((hist.shape[0], 65536), np.int64)
    wide[:, np.arange(256) * 257] = hist
    return wide


def merge(parts: Iterable[dict[str, KindStats]]) -> dict[str, KindStats]:
    """Add per-kind stats of several parts (shards, workers) into one."""
    total: dict[str, KindStats] = {}
    for part in parts:
        for kind, s in part.items():
            total[kind] = total[kind] + s if kind in total else s
    return total


# ---------------------------------------------------------------- one image, one shard


def binary_histogram(mask: np.ndarray) -> np.ndarray | None:
    """int64 (1, 256) counts of a uint8 (H, W) image holding only 0 and 255, else None.

    Two comparisons instead of a full count: ~5x faster for the (usual) binary masks,
    and exact, since the other 254 bins are then known to be empty.
    """
    n0, n255 = int(np.count_nonzero(mask == 0)), int(np.count_nonzero(mask == 255))
    if n0 + n255 != mask.size:
        return None
    hist = np.zeros((1, 256), np.int64)
    hist[0, 0], hist[0, 255] = n0, n255
    return hist


def image_histogram(kind: str, data: bytes) -> tuple[np.ndarray, tuple[int, ...]]:
    """Decode one encoded image of ``kind``; returns (hist (C, B), array shape)."""
    if KINDS[kind].format == "jpg":
        img = codecs.decode_jpeg(data)
    elif KINDS[kind].channels == ("R", "G", "B", "A"):
        img = codecs.decode_png(data)
    else:
        img = codecs.decode_png_gray(data)
    if KINDS[kind].binary and img.dtype == np.uint8 and img.ndim == 2:
        hist = binary_histogram(img)
        if hist is not None:
            return hist, img.shape
    if kind == "fg":
        if img.ndim != 3 or img.shape[2] != 4:
            raise ValueError(f"a prepared fg must be RGBA, got shape {img.shape}")
        rgb = histogram(img[..., :3], where=img[..., 3] > 0)
        return np.concatenate([rgb, histogram(img[..., 3])]), img.shape
    return histogram(img), img.shape


def shard_stats(task: tuple[str, int, tuple[str, ...]]) -> tuple[int, dict[str, KindStats]]:
    """Worker: (store, shard index, kinds) -> (index, per-kind stats of that shard).

    Raises:
        CorruptStore: a member is missing, cut short or does not decode (names it).
    """
    store, index, kinds = task
    reader = StoreReader(visible_store(store, DATASET_JSON))
    out = {kind: KindStats(kind) for kind in kinds}
    members = {kind: KINDS[kind].source for kind in kinds}
    try:
        for key, sample in reader.iter_shard(index, tuple(members.values())):
            for kind, suffix in members.items():
                data = sample[suffix]
                with reader.decoding(key, suffix):
                    hist, shape = image_histogram(kind, data)
                out[kind].add(hist, shape, len(data))
    finally:
        reader.close()
    return index, out


def asset_stats(store: Path, meta: dict, kinds: Iterable[str]) -> dict[str, KindStats]:
    """Stats of the prepared inputs in ``assets/`` (every bg, fg and fg_mask once).

    Every bg appears equally often in the samples, so these are also the statistics of
    the bg input as a trainer sees it.
    """
    reader = StoreReader(store, meta)
    out = {}
    for kind in kinds:
        s = KindStats(kind)
        for i in range(meta["counts"]["bg" if kind == "bg" else "fg"]):
            data = reader.read_asset(KINDS[kind].source, i)
            with decoding(str(reader.asset_path(KINDS[kind].source, i)), store):
                hist, shape = image_histogram(kind, data)
            s.add(hist, shape, len(data))
        out[kind] = s
    return out


# ---------------------------------------------------------------- cache


def shard_digest(shard: dict, kinds: Iterable[str]) -> str:
    """What a shard's cached stats depend on: its files' sha256 and the kinds counted."""
    key = {"files": shard["files"], "kinds": sorted(kinds), "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def save_cached(path: Path, digest: str, stats: dict[str, KindStats]) -> None:
    arrays = {"digest": np.array(digest)}
    for kind, s in stats.items():
        arrays[f"{kind}.hist"] = s.hist if s.hist is not None else np.zeros((0, 0), np.int64)
        arrays[f"{kind}.info"] = np.array([s.bits, s.count, s.bytes, *s.min_hw, *s.max_hw], np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.parent.mkdir(exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def load_cached(path: Path, digest: str, kinds: Iterable[str]) -> dict[str, KindStats] | None:
    """The cached stats of a shard, or None if absent, stale or unreadable."""
    try:
        with np.load(path) as z:
            if str(z["digest"]) != digest:
                return None
            out = {}
            for kind in kinds:
                bits, count, nbytes, h0, w0, h1, w1 = (int(v) for v in z[f"{kind}.info"])
                hist = z[f"{kind}.hist"] if count else None
                out[kind] = KindStats(kind, bits, hist, count, nbytes, (h0, w0), (h1, w1))
            return out
    except (OSError, KeyError, ValueError):
        return None


# ---------------------------------------------------------------- the whole store


def collect(
    store: Path,
    kinds: Iterable[str] = tuple(KINDS),
    workers: int | None = None,
    progress: bool | None = False,
    cache: bool = True,
    engine: str = "local",
    ray_address: str = DEFAULT_RAY_ADDRESS,
) -> dict[str, KindStats]:
    """Per-kind stats of a whole store: assets here, shards on workers (cached per shard).

    Args:
        store: a complete store (any format).
        kinds: which of :data:`KINDS` to count.
        workers: processes for the shards (None = CPU count, 0 = this process).
        progress: tqdm bar over the samples read.
        cache: reuse and write ``STORE/.stats_cache/SHARD.npz``.
        engine, ray_address: where the shards are counted ("local" processes or "ray" tasks,
            see :func:`fgbg.engine.map_shards`); the counts are summed here either way.

    Raises:
        FileNotFoundError: ``store`` has no dataset.json.
        ValueError: an unknown kind.
    """
    store = Path(store)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    meta = read_dataset_json(store)
    sample_kinds = tuple(k for k in kinds if k in SAMPLE_KINDS)
    parts = [asset_stats(store, meta, [k for k in kinds if k in ASSET_KINDS])]
    todo = []
    for shard in meta["shards"] if sample_kinds else []:
        path = store / CACHE_DIR / f"{shard['name']}.npz"
        cached = load_cached(path, shard_digest(shard, sample_kinds), sample_kinds) if cache else None
        if cached is None:
            todo.append(shard)
        else:
            parts.append(cached)
    tasks = [(str(store), s["index"], sample_kinds) for s in todo]
    by_index = {s["index"]: s for s in todo}
    results = map_shards(shard_stats, tasks, [s["count"] for s in todo], workers, progress, engine=engine,
                         ray_address=ray_address, desc="stats")  # fmt: skip
    for index, part in results:
        if cache:
            shard = by_index[index]
            save_cached(store / CACHE_DIR / f"{shard['name']}.npz", shard_digest(shard, sample_kinds), part)
        parts.append(part)
    merged = merge(parts)
    return {k: merged.get(k, KindStats(k)) for k in kinds}


def manifest_counts(store: Path, meta: dict) -> ObjectCounts:
    """Objects of every sample, counted from ``manifest.jsonl`` (one line at a time; the lines
    hold each object's category, visible fraction and what hides it, and what was dropped)."""
    path = Path(store) / MANIFEST
    if not path.is_file():
        raise NotFound(f"{path}: not found; not a complete fgbg store (run `fgbg verify {store}`)")
    of_fg = store_categories(meta).of_fg
    with open(path) as f:
        return count_objects((json.loads(line) for line in f), of_fg)


def category_sizes(meta: dict) -> tuple[list[str], list[int]]:
    """(category names, cut-outs in each) of a store, category id i at position i - 1."""
    categories = store_categories(meta)
    return categories.names, [categories.of_fg.count(i) for i in range(1, len(categories.names) + 1)]


def store_bytes(store: Path, meta: dict) -> int:
    """Bytes on disk of what ``fgbg generate`` wrote: shards, assets, manifest, dataset.json."""
    assets = sum(p.stat().st_size for p in (store / "assets").rglob("*") if p.is_file())
    extra = sum((store / name).stat().st_size for name in (MANIFEST, DATASET_JSON) if (store / name).exists())
    return int(meta["total_bytes"]) + assets + extra


def stats_json(store: Path, per_kind: dict[str, KindStats]) -> dict:
    """The stats.json object (schema in the module docstring)."""
    meta = read_dataset_json(store)
    return {
        "kinds": {kind: s.summary() for kind, s in per_kind.items()},
        "total_bytes": store_bytes(Path(store), meta),
        "samples": meta["counts"]["samples"],
        "objects": manifest_counts(store, meta).summary(*category_sizes(meta)),
        "fgbg_version": __version__,
    }


def compute_stats(
    store: Path,
    kinds: Iterable[str] = tuple(KINDS),
    workers: int | None = None,
    progress: bool | None = False,
    cache: bool = True,
    engine: str = "local",
    ray_address: str = DEFAULT_RAY_ADDRESS,
) -> dict:
    """stats.json of a store, without writing it (see :func:`collect` for the arguments);
    with ``cache``, under the store's write lock, since the per-shard cache is written."""
    if not cache:
        return stats_json(store, collect(store, kinds, workers, progress, cache, engine, ray_address))
    read_dataset_json(store)  # a missing store: say so before the lock would create its folder
    with store_lock(store, "stats"):
        return stats_json(store, collect(store, kinds, workers, progress, cache, engine, ray_address))


def write_stats(
    store: Path, workers: int | None = None, progress: bool | None = False, cache: bool = True, lock: bool = True,
    engine: str = "local", ray_address: str = DEFAULT_RAY_ADDRESS,
) -> dict:  # fmt: skip
    """Compute every kind's stats and write ``STORE/stats.json``; returns its content.

    Holds the store's write lock (``fgbg stats``) unless ``lock`` is False: the caller holds it.
    ``engine``, ``ray_address``: see :func:`collect`.

    Raises:
        StoreBusy: another process is writing the store.
        CorruptStore: a member or asset does not decode (names it).
        NotOurs: the store holds a stats.json that fgbg did not write.
    """
    if lock:
        read_dataset_json(store)  # a missing store: say so before the lock would create its folder
        check_stats_ours(store)
        with store_lock(store, "stats"):
            return write_stats(store, workers, progress, cache, lock=False, engine=engine, ray_address=ray_address)
    stats = stats_json(store, collect(store, workers=workers, progress=progress, cache=cache, engine=engine, ray_address=ray_address))
    atomic_write_json(Path(store) / STATS_JSON, stats)
    return stats


def check_stats_ours(store: Path) -> None:
    """Refuse to overwrite a stats.json of the store that fgbg stats did not write (NotOurs)."""
    check_files_ours(theirs_among([Path(store) / STATS_JSON], is_fgbg_json), "fgbg stats")


def read_stats(store: Path) -> dict:
    path = Path(store) / STATS_JSON
    if not path.exists():
        raise NotFound(f"{path}: not found; run `fgbg stats {store}` first")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- presenting


def _fmt(values: list, digits: int = 4) -> str:
    return " ".join("-" if v is None else f"{v:.{digits}f}" for v in values)


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def dimensions(entry: dict) -> str:
    """Width x height, as --size takes it: "640x480", or "up to 112x112 (from 31x40)" when sizes vary (fg, fg_mask)."""
    size = f"{entry['width']}x{entry['height']}"
    if "min_height" in entry:
        return f"up to {size} (from {entry['min_width']}x{entry['min_height']})"
    return size


def format_table(stats: dict) -> str:
    """A plain-text table of stats.json, one line per kind (what `fgbg stats` prints)."""
    rows = [("kind", "type", "ch", "size", "count", "bytes", "mean", "std", "min", "max", "fg")]
    for kind, e in stats["kinds"].items():
        fg = f"{e['fg_fraction']:.4f}" if "fg_fraction" in e else ""
        rows.append(
            (kind, e["format"], str(e["channels"]), dimensions(e), str(e["count"]), human_bytes(e["bytes"]),
             _fmt(e.get("mean", [])), _fmt(e.get("std", [])), _fmt(e.get("min", []), 2), _fmt(e.get("max", []), 2), fg)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"total: {human_bytes(stats['total_bytes'])} on disk ({stats['total_bytes']} bytes)")
    if "objects" in stats:
        lines += objects_lines(stats["objects"])
    return "\n".join(lines)


def objects_lines(objects: dict) -> list[str]:
    """What `fgbg stats` prints of the objects: instances per category, and for composites with
    several objects how many each holds and how many extra objects were dropped."""
    cats = ", ".join(f"{c['name']} {c['instances']:,}" for c in objects["categories"])
    lines = [f"instances: {objects['instances']:,} ({cats})"]
    if set(objects["per_image"]) != {"1"}:
        per = ", ".join(f"{k}: {v:,}" for k, v in objects["per_image"].items())
        lines.append(
            f"objects per composite: {objects['instances'] / max(objects['images'], 1):.2f} on average ({per});"
            f" {objects['hidden_by_objects']:,} partly hidden by another object; {objects['dropped']:,} dropped"
            " (never reached --min-visible / --min-area)"
        )
        lines += extra_lines(objects)
    return lines


def extra_lines(objects: dict) -> list[str]:
    """Per category, the extra objects (2nd on: those --balance draws) and its cut-outs, so that a user
    sees whether categories are pasted about equally often whatever their number of cut-outs."""
    cats = objects["categories"]
    if not any("extra" in c for c in cats):
        return []  # a stats.json written before they were counted
    total = sum(c.get("extra", 0) for c in cats) or 1
    each = ", ".join(
        f"{c['name']} {c.get('extra', 0):,} ({c.get('extra', 0) / total:.0%}"
        + (f"; {c['cutouts']} cut-out{'s' if c['cutouts'] != 1 else ''})" if "cutouts" in c else ")")
        for c in cats
    )  # fmt: skip
    return [f"extra objects (2nd on, drawn by --balance) per category: {each}"]


def _floats(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def normalisation_snippets(stats: dict) -> dict[str, str]:
    """Ready-to-paste ``torchvision.transforms.Normalize`` lines per input kind.

    The model's inputs are bg and fg_bg (and the two stacked, 6 channels); mask and depth
    are targets on [0, 1] and are not normalised.
    """
    kinds = stats["kinds"]
    out = {}
    for kind in ("bg", "fg_bg"):
        if kinds.get(kind, {}).get("mean"):
            e = kinds[kind]
            out[kind] = f"Normalize(mean={_floats(e['mean'])}, std={_floats(e['std'])})  # {kind}, after ToTensor()"
    if "bg" in out and "fg_bg" in out:
        mean = kinds["bg"]["mean"] + kinds["fg_bg"]["mean"]
        std = kinds["bg"]["std"] + kinds["fg_bg"]["std"]
        out["bg+fg_bg"] = f"Normalize(mean={_floats(mean)}, std={_floats(std)})  # torch.cat([bg, fg_bg]), 6 channels"
    return out


def normalisation_text(stats: dict) -> str:
    lines = ["from torchvision.transforms import Normalize"]
    lines += [snippet for snippet in normalisation_snippets(stats).values()]
    return "\n".join(lines)
