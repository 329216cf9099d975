"""Torch datasets over a store (wds, folder or zip), with a held-out split and paired augmentation.

A sample is a dict of tensors at the training size S:

- ``bg``, ``fg_bg``: float32 (3, S, S), normalised with the store's stats.json (else 0.5 / 0.25)
- ``mask``: float32 (1, S, S) in {0, 1}
- ``depth``: float32 (1, S, S) in [0, 1], inverse depth, near = bright (PNG value / 255 or / 65535)
- ``index``: int, the sample's position in the store (plan order)

Random access by index: :class:`SampleReader` finds every member once (tar offsets, file or
zip member names) and opens files lazily, once per process, so each DataLoader worker (and
each distributed rank, through a DistributedSampler) reads with its own handles. The
augmentation of a sample is drawn from a generator seeded by (seed, epoch, index), so any
number of workers yields the same samples.
"""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from fgbg import codecs
from fgbg.make.render import asset_paths
from fgbg.store.layout import MANIFEST, MEMBERS, bg_group, read_dataset_json

ValBy = Literal["bg", "fg", "random"]
VAL_BY: tuple[str, ...] = ("bg", "fg", "random")
DEFAULT_MEAN, DEFAULT_STD = 0.5, 0.25  # without stats.json: [0, 1] -> about [-2, 2]
STATS_JSON = "stats.json"


# ---------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Stats:
    mean: list[float]  # 6 values: bg RGB then fg_bg RGB, on the [0, 1] scale
    std: list[float]
    source: str  # "stats.json" or "default"


def load_stats(store: Path) -> Stats:
    """Per-channel mean/std of bg and fg_bg from ``STORE/stats.json`` when present, else 0.5 / 0.25."""
    path = Path(store) / STATS_JSON
    try:
        kinds = json.loads(path.read_text())["kinds"]
        mean = [float(v) for kind in ("bg", "fg_bg") for v in kinds[kind]["mean"]]
        std = [float(v) for kind in ("bg", "fg_bg") for v in kinds[kind]["std"]]
        if len(mean) == len(std) == 6 and min(std) > 0:
            return Stats(mean, std, STATS_JSON)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return Stats([DEFAULT_MEAN] * 6, [DEFAULT_STD] * 6, "default")


def normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(..., C, H, W) on [0, 1] -> (x - mean) / std per channel (C = len(mean))."""
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """The inverse of :func:`normalize`."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * s + m


# ---------------------------------------------------------------- reading members by index


@dataclass(frozen=True)
class Entry:
    key: str
    bg: int
    fg: int


def read_entries(store: Path) -> list[Entry]:
    """Every sample of the store in plan order, from manifest.jsonl."""
    path = Path(store) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; is {store} a complete fgbg store? run `fgbg generate` first")
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            m = json.loads(line)
            out.append(Entry(m["key"], int(m["bg"]), int(m["fg"])))
    return out


def index_tar(path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """{key: {member suffix: (byte offset, size)}} of a WebDataset tar, reading headers only."""
    index: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(path, "r") as tar:
        for info in tar:
            if info.isfile():
                key, suffix = info.name.split(".", 1)
                index.setdefault(key, {})[suffix] = (info.offset_data, info.size)
    return index


class SampleReader:
    """Random access to a store's samples: ``reader.read(i) -> {member suffix: bytes}``.

    Locations are found once in ``__init__`` (no file stays open); handles are opened on
    first use and belong to the process that opened them: after a fork (DataLoader workers)
    each process opens its own.
    """

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        meta = read_dataset_json(self.store)
        self.format: str = meta["format"]
        self.depth_bits: int = int(meta["config"]["depth_bits"])
        self.size: int = int(meta["config"]["size"])
        self.n_bg: int = int(meta["counts"]["bg"])
        self.entries = read_entries(self.store)
        if len(self.entries) != meta["counts"]["samples"]:
            raise ValueError(f"{self.store}: manifest has {len(self.entries)} samples, dataset.json says {meta['counts']['samples']}; run `fgbg verify`")
        self._tar_of: list[tuple[str, dict[str, tuple[int, int]]]] = []
        if self.format == "wds":
            by_key = {}
            for shard in meta["shards"]:
                name = next(iter(shard["files"]))  # {relative path: sha256}
                for key, members in index_tar(self.store / name).items():
                    by_key[key] = (name, members)
            missing = [e.key for e in self.entries if e.key not in by_key]
            if missing:
                raise ValueError(f"{self.store}: {len(missing)} samples of the manifest are not in the shards (first {missing[0]}); run `fgbg verify`")
            self._tar_of = [by_key[e.key] for e in self.entries]
        self._pid: int | None = None
        self._handles: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pid": None, "_handles": {}}  # never ship open handles (spawn)

    def _handle(self, name: str):
        if self._pid != os.getpid():  # a new process (forked worker): forget the parent's handles
            self._pid, self._handles = os.getpid(), {}
        if name not in self._handles:
            path = self.store / name
            self._handles[name] = zipfile.ZipFile(path) if name.endswith(".zip") else os.open(path, os.O_RDONLY)
        return self._handles[name]

    def read(self, i: int) -> dict[str, bytes]:
        """The members of sample ``i`` (plan order): fg_bg.jpg, mask.png, depth.png, json."""
        key = self.entries[i].key
        if self.format == "wds":
            name, members = self._tar_of[i]
            fd = self._handle(name)
            return {suffix: os.pread(fd, size, offset) for suffix, (offset, size) in members.items()}
        group = bg_group(key)
        if self.format == "folder":
            return {s: (self.store / kind / group / (key + ext)).read_bytes() for s, (kind, ext) in MEMBERS.items()}
        return {s: self._handle(f"{kind}/{group}.zip").read(key + ext) for s, (kind, ext) in MEMBERS.items()}

    def read_bg(self, bg: int) -> bytes:
        """The JPEG bytes of background ``bg`` (assets/bg), the exact image its composites were made on."""
        return asset_paths(self.store, "bg", self.n_bg)[bg].read_bytes()

    def close(self) -> None:
        for h in self._handles.values():
            h.close() if isinstance(h, zipfile.ZipFile) else os.close(h)
        self._handles = {}


# ---------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    by: str  # "bg", "fg" or "random"
    fraction: float  # share held out for validation (of backgrounds, foregrounds or samples)
    seed: int
    held_out: list[int]  # bg or fg indices held out (empty for "random")
    train: list[int] = field(repr=False)  # sample indices
    val: list[int] = field(repr=False)

    def record(self) -> dict:
        """What a run records: everything but the index lists (they follow from it)."""
        d = asdict(self)
        return {**{k: d[k] for k in ("by", "fraction", "seed", "held_out")}, "n_train": len(self.train), "n_val": len(self.val)}


def split_indices(entries: list[Entry], by: str = "bg", fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out ``fraction`` of the backgrounds (or foregrounds, or samples) for validation.

    Raises:
        ValueError: an unknown ``by``, or too few backgrounds/foregrounds to hold one out.
    """
    if by not in VAL_BY:
        raise ValueError(f"--val must be one of {', '.join(VAL_BY)}, got {by!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if by == "random":
        n = len(entries)
        n_val = max(1, round(fraction * n))
        val = sorted(rng.choice(n, n_val, replace=False).tolist())
        chosen = set(val)
        return Split(by, fraction, seed, [], [i for i in range(n) if i not in chosen], val)
    ids = sorted({getattr(e, by) for e in entries})
    if len(ids) < 2:
        raise ValueError(f"--val {by} needs at least 2 {by}s in the store, it has {len(ids)}; use --val random")
    n_held = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    held = sorted(int(i) for i in rng.choice(ids, n_held, replace=False))
    held_set = set(held)
    val = [i for i, e in enumerate(entries) if getattr(e, by) in held_set]
    train = [i for i, e in enumerate(entries) if getattr(e, by) not in held_set]
    return Split(by, fraction, seed, held, train, val)


# ---------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True  # horizontal flip of all four images, p = 0.5
    gain: float = 0.1  # per-channel gain in [1 - gain, 1 + gain]
    contrast: float = 0.2  # contrast around 0.5 in [1 - contrast, 1 + contrast]
    brightness: float = 0.08  # offset in [-brightness, brightness]


def draw_augment(config: AugmentConfig, generator: torch.Generator) -> dict:
    """Random parameters of one paired augmentation: {"flip": bool, "gain": (3,), "contrast": float, "offset": float}."""
    u = torch.rand(6, generator=generator)
    return {
        "flip": bool(config.flip and u[0] < 0.5),
        "gain": 1 + config.gain * (2 * u[1:4] - 1),
        "contrast": float(1 + config.contrast * (2 * u[4] - 1)),
        "offset": float(config.brightness * (2 * u[5] - 1)),
    }


def color_jitter(rgb: torch.Tensor, gain: torch.Tensor, contrast: float, offset: float) -> torch.Tensor:
    """A pointwise colour change of (3, H, W) on [0, 1]: ((x * gain - 0.5) * contrast + 0.5 + offset), clamped.

    Pointwise and image-independent, so bg and fg_bg stay consistent: where the fg is absent they stay equal.
    """
    return ((rgb * gain.view(3, 1, 1) - 0.5) * contrast + 0.5 + offset).clamp(0, 1)


def apply_augment(sample: dict[str, torch.Tensor], params: dict) -> dict[str, torch.Tensor]:
    """The same colour jitter on bg and fg_bg, the same flip on bg, fg_bg, mask and depth."""
    out = dict(sample)
    for name in ("bg", "fg_bg"):
        out[name] = color_jitter(sample[name], params["gain"], params["contrast"], params["offset"])
    if params["flip"]:
        for name in ("bg", "fg_bg", "mask", "depth"):
            out[name] = out[name].flip(-1)
    return out


# ---------------------------------------------------------------- the dataset


def to_tensor(img: np.ndarray, size: int, top: int = 255) -> torch.Tensor:
    """Decoded uint8/uint16 (H, W[, C]) -> float32 (C, size, size) on [0, 1], resized bilinear
    with antialiasing (not at all at the same size).

    uint8 is resized before it becomes float: torch's uint8 kernel is ~6x faster on RGB, and
    the result is within one grey level of resizing in float.
    """
    x = torch.from_numpy(img if img.flags.writeable else img.copy())
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # a view: channels-last memory, as the kernel likes
    if x.dtype != torch.uint8:
        x = x.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x.float().div_(top).contiguous()


class StoreDataset(Dataset):
    """Samples ``indices`` of a store at ``size`` px, normalised, optionally augmented.

    Items are indexed by position in ``indices``; an item may also be ``(position, epoch)``
    (from :class:`EpochSampler`) so the augmentation changes with the epoch but not with the
    number of workers.
    """

    def __init__(
        self,
        store: Path,
        indices: list[int] | None = None,
        size: int | None = None,
        stats: Stats | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        normalized: bool = True,
    ) -> None:
        self.reader = SampleReader(store)
        self.indices = list(range(len(self.reader))) if indices is None else list(indices)
        self.size = size or self.reader.size
        self.stats = stats or load_stats(store)
        self.augment = augment
        self.seed = seed
        self.normalized = normalized
        self.depth_top = (1 << self.reader.depth_bits) - 1
        self._bg_cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def _bg(self, bg: int) -> torch.Tensor:
        if bg not in self._bg_cache:
            self._bg_cache[bg] = to_tensor(codecs.decode_jpeg(self.reader.read_bg(bg)), self.size)
        return self._bg_cache[bg]

    def raw(self, position: int) -> dict[str, torch.Tensor]:
        """Sample at ``position``, decoded and resized, on the [0, 1] scale, not augmented or normalised."""
        index = self.indices[position]
        members = self.reader.read(index)
        mask = to_tensor(codecs.decode_png_gray(members["mask.png"]), self.size)
        return {
            "bg": self._bg(self.reader.entries[index].bg),
            "fg_bg": to_tensor(codecs.decode_jpeg(members["fg_bg.jpg"]), self.size),
            "mask": (mask > 0.5).float(),
            "depth": to_tensor(codecs.decode_png_gray(members["depth.png"]), self.size, self.depth_top),
        }

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        position, epoch = item if isinstance(item, tuple) else (item, 0)
        sample = self.raw(position)
        if self.augment is not None:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_000_007 + self.indices[position])
            sample = apply_augment(sample, draw_augment(self.augment, g))
        if self.normalized:
            sample["bg"] = normalize(sample["bg"], self.stats.mean[:3], self.stats.std[:3])
            sample["fg_bg"] = normalize(sample["fg_bg"], self.stats.mean[3:], self.stats.std[3:])
        sample["index"] = torch.tensor(self.indices[position])
        return sample


class EpochSampler(Sampler):
    """Yields (position, epoch) for every position, shuffled by (seed, epoch) when ``shuffle``.

    ``set_epoch`` is called by Lightning (and by hand elsewhere) at each epoch start; the order is
    a pure function of (seed, epoch), so a resumed run sees the same batches.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch)).tolist()
        else:
            order = range(self.n)
        return iter([(i, self.epoch) for i in order])


def make_loader(dataset: StoreDataset, batch: int, shuffle: bool, workers: int = 0, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` with an :class:`EpochSampler`; workers fork and open their own files."""
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=EpochSampler(len(dataset), shuffle, seed),
        num_workers=workers,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
