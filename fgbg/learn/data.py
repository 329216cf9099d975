"""Torch datasets over a store (wds, folder or zip), with a held-out split and paired augmentation.

A sample is a dict of compact tensors at the training size S, as stored (a batch of 256 at
224 px is 0.1 GB, not the 0.4 GB of float32, in every loader queue and pinned buffer):

- ``bg``, ``fg_bg``: uint8 (3, S, S)
- ``mask``: uint8 (1, S, S) in {0, 1}
- ``depth``: uint8 or uint16 (1, S, S), the PNG's values (inverse depth, near = bright; / 255 or / 65535)
- ``augment`` (augmented datasets only): the sample's paired augmentation, drawn in the loader
  (:func:`draw_augment`): flip bool (), gain float32 (3,), contrast float32 (), offset float32 ()
- ``bg_aug`` (datasets with ``bg_augment``): the sample's perturbation of its bg input apart from
  the composite (:func:`fgbg.learn.perturb.draw_bg_aug`); its JPEG re-encoding is done here, on ``bg``
- ``index``: int, the sample's position in the store (plan order)
- ``content`` (stores of a non-square frame only): int64 (4,) (top, left, height, width) of the image
  inside the S x S sample (:func:`content_box`)

A store of a non-square frame W x H is not distorted: each image is resized keeping its aspect so
that its longer side is S, centred, and padded to S x S with zeros (bg and fg_bg alike, so the
padding is unchanged background; mask 0, depth 0). The padding is left out of the losses, the
validation and evaluation metrics and the baseline's threshold (:func:`content_slices`), and
``fgbg predict`` scales an image the same way (longer side S, padded, never stretched).

The float work runs on the device, after the batch is copied there: :func:`prepare_batch` (called
by the LightningModule's ``on_after_batch_transfer`` and by evaluate, through
:meth:`StoreDataset.prepare`) scales to [0, 1], applies each sample's augmentation and normalises
bg and fg_bg with the store's stats.json (else 0.5 / 0.25).

Random access by index goes through the store's one reader
(:class:`fgbg.store.read.StoreReader`): member places come from the index written with each
shard, keys and each sample's bg and fg from the plan in dataset.json (nothing is scanned,
and the manifest is not parsed); files open lazily, once per process, so each DataLoader
worker (and each distributed rank, which takes its share through :class:`EpochSampler`)
reads with its own handles. A damaged member stops loading with a one-line CorruptStore naming it. The
augmentation of a sample is drawn from a generator seeded by (seed, epoch, index), so any
number of workers yields the same samples.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from fgbg import codecs
from fgbg.errors import UserError
from fgbg.learn.perturb import BgAugConfig, apply_bg_aug_, draw_bg_aug, jpeg_chw
from fgbg.make.split import VAL_BY, Split, ValBy, entry_column, split_indices  # noqa: F401 (torch-free; re-exported)
from fgbg.store.plan import Plan
from fgbg.store.read import StoreReader, decoding

DEFAULT_MEAN, DEFAULT_STD = 0.5, 0.25  # without stats.json: [0, 1] -> about [-2, 2]
STATS_JSON = "stats.json"
BG_AUG_STREAM = 1 << 62  # offsets the bg perturbation's seeds from the paired augmentation's
SHM = Path("/dev/shm")  # where DataLoader workers hand their batches over (torch's shared memory)
SHM_SHARE = 0.5  # of /dev/shm's free space that the loaders' batches in flight may fill: the batch being handed over, other processes


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
    return normalize_(x.clone(), mean, std)


def normalize_(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """:func:`normalize` in place; returns ``x``."""
    return x.sub_(channel_constants(tuple(mean), x.dtype, x.device)).div_(channel_constants(tuple(std), x.dtype, x.device))


def denormalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """The inverse of :func:`normalize`."""
    return x * channel_constants(tuple(std), x.dtype, x.device) + channel_constants(tuple(mean), x.dtype, x.device)


@functools.lru_cache(maxsize=64)
def channel_constants(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` as a (C, 1, 1) tensor on ``device``, made once and kept (read-only): a tensor built from
    a Python list at every step is a copy to the GPU that waits for the work queued before it."""
    with torch.inference_mode(False):  # usable outside inference mode too, whoever asked first
        return torch.tensor(values, dtype=dtype, device=device).view(-1, 1, 1)


# ---------------------------------------------------------------- which samples


def read_entries(store: Path) -> Plan:
    """Every sample of the store in plan order: ``entries[i]`` has .key, .bg, .fg, .flip, .k.

    The plan itself (from dataset.json): computed on demand, nothing per sample is held.
    """
    return StoreReader(store).plan


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


def augment_tensors(params: dict) -> dict[str, torch.Tensor]:
    """:func:`draw_augment`'s parameters as tensors that collate: flip bool (), gain float32 (3,),
    contrast and offset float32 () (exact: they were computed in float32)."""
    return {
        "flip": torch.tensor(params["flip"]),
        "gain": params["gain"].float(),
        "contrast": torch.tensor(params["contrast"], dtype=torch.float32),
        "offset": torch.tensor(params["offset"], dtype=torch.float32),
    }


def color_jitter(rgb: torch.Tensor, gain: torch.Tensor, contrast, offset) -> torch.Tensor:
    """A pointwise colour change of (..., 3, H, W) on [0, 1]: ((x * gain - 0.5) * contrast + 0.5 + offset), clamped.

    gain (..., 3); contrast and offset: floats, or (...) tensors (one per image of a batch).
    Pointwise and image-independent, so bg and fg_bg stay consistent: where the fg is absent they stay equal.
    """
    return color_jitter_(rgb.clone(), gain, contrast, offset)


def color_jitter_(rgb: torch.Tensor, gain: torch.Tensor, contrast, offset) -> torch.Tensor:
    """:func:`color_jitter` in place (the same operations in the same order: the same numbers); returns ``rgb``."""
    contrast = torch.as_tensor(contrast, dtype=rgb.dtype, device=rgb.device)[..., None, None, None]
    offset = torch.as_tensor(offset, dtype=rgb.dtype, device=rgb.device)[..., None, None, None]
    return rgb.mul_(gain[..., None, None]).sub_(0.5).mul_(contrast).add_(0.5).add_(offset).clamp_(0, 1)


def augment_batch_(batch: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each image's colour jitter on its bg and fg_bg (in place), its flip on bg, fg_bg, mask and depth; returns ``batch``.

    batch: float bg, fg_bg (B, 3, S, S) on [0, 1], mask and depth (B, 1, S, S); ``params``: collated
    :func:`augment_tensors` (flip (B,), gain (B, 3), contrast (B,), offset (B,)), on the same device.
    The flip is a select, not an indexing of the flipped images, so a GPU never waits for it.
    """
    for name in ("bg", "fg_bg"):
        color_jitter_(batch[name], params["gain"], params["contrast"], params["offset"])
    flip = params["flip"].view(-1, 1, 1, 1)
    for name in ("bg", "fg_bg", "mask", "depth"):
        batch[name] = torch.where(flip, batch[name].flip(-1), batch[name])
    return batch


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 or uint16 -> float32 on [0, 1]: value / 255 or / 65535."""
    return x.float().div_(torch.iinfo(x.dtype).max)


def prepare_batch(batch: dict, stats: Stats | None = None) -> dict:
    """A collated compact batch (on any device) -> the float batch of a network, on the same device.

    bg, fg_bg: float32 (B, 3, S, S) on [0, 1], augmented by the batch's ``augment`` parameters when
    it has them, the bg perturbed apart from the composite by its ``bg_aug`` ones when it has them
    (:func:`~fgbg.learn.perturb.apply_bg_aug_`), then normalised with ``stats`` when given;
    mask float32 (B, 1, S, S) in {0, 1};
    depth float32 (B, 1, S, S) on [0, 1]; other entries (``index``) as they are. A batch whose bg is
    already floating point was prepared (or made in float by its caller) and is returned unchanged.
    The float tensors are new, so every later step runs in place on them.
    """
    if batch["bg"].is_floating_point():
        return batch
    out = {k: v for k, v in batch.items() if k not in ("augment", "bg_aug")}
    out.update(bg=to_unit(batch["bg"]), fg_bg=to_unit(batch["fg_bg"]), mask=batch["mask"].float(), depth=to_unit(batch["depth"]))
    if "augment" in batch:
        augment_batch_(out, batch["augment"])
    if "bg_aug" in batch:
        apply_bg_aug_(out, batch["bg_aug"])
    if stats is not None:
        for name, channels in (("bg", slice(0, 3)), ("fg_bg", slice(3, 6))):
            normalize_(out[name], stats.mean[channels], stats.std[channels])
    return out


# ---------------------------------------------------------------- the dataset


def content_box(frame: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an image of ``frame`` (H, W) resized keeping its aspect, its
    longer side ``size``, and centred in a (size, size) sample; (0, 0, size, size) for a square.

    The padding is split evenly (the shorter side keeps the parity of ``size``, at most a pixel from
    its exact aspect), so a horizontal flip of the sample keeps the same box.

    >>> content_box((32, 48), 96)
    (16, 0, 64, 96)
    """
    height, width = frame
    longer = max(height, width)
    pad_y = round((size - size * height / longer) / 2)
    pad_x = round((size - size * width / longer) / 2)
    return pad_y, pad_x, size - 2 * pad_y, size - 2 * pad_x


def content_slices(batch: dict) -> tuple[slice, slice]:
    """(rows, columns) of the image inside a batch's samples (their ``content``, the same for every
    sample of a store): the part losses and metrics see; everything for a batch without padding."""
    if "content" not in batch:
        return slice(None), slice(None)
    top, left, height, width = (int(v) for v in batch["content"][0])
    return slice(top, top + height), slice(left, left + width)


def letterboxed(img: np.ndarray, size: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Decoded uint8/uint16 (H, W[, C]) -> the same dtype (C, size, size): resized to the ``box``
    (:func:`content_box`) and padded with zeros around it; :func:`resized` when the box is the sample."""
    top, left, height, width = box
    if (height, width) == (size, size):
        return resized(img, size)
    inner = resized(img, (height, width))
    return F.pad(inner, (left, size - left - width, top, size - top - height)).contiguous()


def resized(img: np.ndarray, size: int | tuple[int, int]) -> torch.Tensor:
    """Decoded uint8/uint16 (H, W[, C]) -> the same dtype (C, size, size) (or (C, h, w) for ``size``
    (h, w)), resized bilinear with antialiasing (not at all at the same size).

    uint8 is resized by torch's uint8 kernel (~6x faster than float on RGB, within one grey level
    of resizing in float); uint16, which has no such kernel, in float32 and rounded back.
    """
    x = torch.from_numpy(img if img.flags.writeable else img.copy())
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # a view: channels-last memory, as the kernel likes
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if x.shape[-2:] == hw:
        return x.contiguous()
    kind = x.dtype
    y = F.interpolate((x if kind == torch.uint8 else x.float())[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    return y.contiguous() if kind == torch.uint8 else y.round_().clamp_(0, torch.iinfo(kind).max).to(kind).contiguous()


class StoreDataset(Dataset):
    """Samples ``indices`` of a store at ``size`` px (S x S; a non-square store's images letterboxed,
    see the module's docstring), compact, optionally
    with each sample's augmentation parameters; :meth:`prepare` turns a batch of them into floats,
    normalised when ``normalized``.

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
        bg_augment: BgAugConfig | None = None,
        bg_folder: Path | None = None,
    ) -> None:
        self.reader = StoreReader(store)
        self.indices = list(range(len(self.reader))) if indices is None else list(indices)
        self.size = size or max(self.reader.config.frame)
        self.content = content_box(self.reader.config.frame, self.size)  # (top, left, h, w) of the image in a sample
        self.padded = self.content != (0, 0, self.size, self.size)
        self.stats = stats or load_stats(store)
        self.augment = augment
        self.bg_augment = bg_augment
        self.bg_folder = None if bg_folder is None else Path(bg_folder)
        self.seed = seed
        self.normalized = normalized
        self._bg_cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def _bg(self, bg: int) -> torch.Tensor:
        if bg not in self._bg_cache:
            if self.bg_folder is not None:
                self._bg_cache[bg] = self.fit(self._folder_bg(bg))
            else:
                data = self.reader.read_asset("bg", bg)
                with decoding(str(self.reader.asset_path("bg", bg)), self.reader.store):
                    self._bg_cache[bg] = self.fit(codecs.decode_jpeg(data))
        return self._bg_cache[bg]

    def bg_folder_path(self, bg: int) -> Path:
        """The image of bg ``bg`` in ``bg_folder``: the file name the store recorded for it."""
        return self.bg_folder / self.reader.meta["sources"]["bg"][bg]["file"]

    def _folder_bg(self, bg: int) -> np.ndarray:
        """uint8 (H, W, 3): bg ``bg``'s image in ``bg_folder``, fitted to the store's frame as the store fitted its own."""
        from fgbg.make.assets import BadInput, prepare_bg, read_image  # PIL work, needed with a bg folder only

        path = self.bg_folder_path(bg)
        try:
            img, _ = read_image(path)
        except BadInput as e:
            raise UserError(f"--bg-from: {path}: {e}") from None
        config = self.reader.config
        return prepare_bg(img, config.frame, config.bg_fit)

    def fit(self, img: np.ndarray) -> torch.Tensor:
        """A decoded image of the store (H, W[, C]) as a sample holds it: (C, S, S), letterboxed when the store is not square."""
        return letterboxed(img, self.size, self.content)

    def check_bg_folder(self) -> None:
        """Raises UserError (one line) when ``bg_folder`` lacks the image of a bg these samples use."""
        if self.bg_folder is None:
            return
        if not self.bg_folder.is_dir():
            raise UserError(f"--bg-from {self.bg_folder}: not a folder")
        for bg in sorted({self.reader.plan[i].bg for i in self.indices}):
            if not self.bg_folder_path(bg).is_file():
                raise UserError(f"--bg-from {self.bg_folder}: no {self.bg_folder_path(bg).name}, the image of the store's bg {bg}")

    def raw(self, position: int) -> dict[str, torch.Tensor]:
        """Sample at ``position``, decoded and resized, compact, not augmented.

        Raises:
            CorruptStore: a member is missing, cut short or does not decode (names it).
        """
        index = self.indices[position]
        members = self.reader.read(index)
        mask = self.fit(self.reader.decode(index, "mask.png", members["mask.png"]))
        sample = {
            "bg": self._bg(self.reader.plan[index].bg),
            "fg_bg": self.fit(self.reader.decode(index, "fg_bg.jpg", members["fg_bg.jpg"])),
            "mask": (mask > 127).to(torch.uint8),  # above one half, as the float threshold was
            "depth": self.fit(self.reader.decode(index, "depth.png", members["depth.png"])),
        }
        if self.padded:
            sample["content"] = torch.tensor(self.content)
        return sample

    def augmentation(self, position: int, epoch: int) -> dict:
        """The :func:`draw_augment` parameters of the sample at ``position`` in ``epoch``: seeded by (seed, epoch, index)."""
        return draw_augment(self.augment, self._generator(position, epoch))

    def bg_augmentation(self, position: int, epoch: int) -> dict[str, torch.Tensor]:
        """The :func:`~fgbg.learn.perturb.draw_bg_aug` parameters of the sample at ``position`` in ``epoch``:
        seeded by (seed, epoch, index), apart from the paired augmentation's draws."""
        return draw_bg_aug(self.bg_augment, self._generator(position, epoch, BG_AUG_STREAM), self.size)

    def _generator(self, position: int, epoch: int, stream: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_000_007 + self.indices[position] + stream)

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        position, epoch = item if isinstance(item, tuple) else (item, 0)
        sample = self.raw(position)
        if self.augment is not None:
            sample["augment"] = augment_tensors(self.augmentation(position, epoch))
        if self.bg_augment is not None:
            sample["bg_aug"] = self.bg_augmentation(position, epoch)
            if sample["bg_aug"]["jpeg"]:  # a real codec, here in the loader (per image on the CPU): see README's "Real captures"
                sample["bg"] = jpeg_chw(sample["bg"], int(sample["bg_aug"]["jpeg"]))
        sample["index"] = torch.tensor(self.indices[position])
        return sample

    def prepare(self, batch: dict) -> dict:
        """A collated batch of this dataset (on any device) in float: :func:`prepare_batch` with the
        dataset's stats when ``normalized``, else on the [0, 1] scale."""
        return prepare_batch(batch, self.stats if self.normalized else None)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process in torch.distributed's default group; (0, 1) outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Yields (position, epoch): this process's share of every position, shuffled by (seed, epoch) when ``shuffle``.

    The order is a pure function of (seed, epoch), so a resumed run sees the same batches. Under
    DDP (torch.distributed initialised; or ``rank``/``world`` given) rank r takes ``order[r::world]``,
    so the k-th batches of all ranks together are the contiguous run ``order[k*B*W:(k+1)*B*W]``:
    each sample once per epoch, and a position in the epoch (in samples) that means the same for
    any number of ranks. ``even`` (training): the order is cut to a multiple of ``world`` so every
    rank takes the same number of steps; otherwise (validation) nothing is padded or repeated, and
    ranks may hold one sample more or less.

    ``set_epoch`` is called by Lightning at each epoch start. :meth:`skip_once` leaves out the
    first samples of the order on the next pass (a run resumed in mid-epoch); ``len`` stays the
    whole pass's, so Lightning's count of the epoch's batches (restored from the checkpoint) holds.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, even: bool = False, rank: int | None = None, world: int | None = None) -> None:
        self.n, self.shuffle, self.seed, self.even, self.epoch = n, shuffle, seed, even, 0
        self._rank, self._world, self._skip = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_once(self, samples: int) -> None:
        """The next pass starts ``samples`` into the epoch's order (over all ranks)."""
        self._skip = samples

    def ranks(self) -> tuple[int, int]:
        """(this rank, world size), asked when needed: the process group starts after the loader is built."""
        rank, world = distributed_rank()
        return (rank if self._rank is None else self._rank), (world if self._world is None else self._world)

    def __len__(self) -> int:
        rank, world = self.ranks()
        return self.n // world if self.even else len(range(rank, self.n, world))

    def order(self) -> torch.Tensor:
        """int64 (n,): the epoch's order of positions over all ranks."""
        if self.shuffle:
            return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))
        return torch.arange(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rank, world = self.ranks()
        rest, self._skip = self.order()[self._skip :], 0
        if self.even:
            rest = rest[: len(rest) // world * world]
        epoch = self.epoch
        return ((i, epoch) for i in rest[rank::world].tolist())


def validation_subset(indices: list[int], samples: int, seed: int) -> list[int]:
    """A fixed subset of ``samples`` of ``indices`` (all of them when ``samples`` is 0 or more than there are),
    drawn by ``seed`` and kept in store order: what validation during training sees."""
    if not samples or samples >= len(indices):
        return list(indices)
    chosen = np.sort(np.random.default_rng(seed).choice(len(indices), samples, replace=False))
    return [indices[i] for i in chosen]


def make_loader(
    dataset: StoreDataset,
    batch: int,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    *,
    even: bool = False,
    pin_memory: bool = False,
    prefetch: int = 4,
) -> DataLoader:
    """A DataLoader over ``dataset`` with an :class:`EpochSampler` (``even``: the same count on every rank);
    workers fork, open their own files and stay alive between epochs, each ``prefetch`` batches ahead;
    ``pin_memory`` for copies to a GPU."""
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=EpochSampler(len(dataset), shuffle, seed, even),
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch if workers > 0 else None,
    )


# ---------------------------------------------------------------- shared memory


def shm_free_bytes(path: Path = SHM) -> int | None:
    """Free bytes of the shared memory that loader workers pass batches through; None where there is none."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def compact_sample_bytes(size: int, depth_bytes: int) -> int:
    """Bytes of one compact sample at ``size`` px (see the module's docstring): bg and fg_bg 3 bytes a
    pixel, mask 1, depth ``depth_bytes`` (1 or 2), and a few for the index and the augmentation.

    >>> compact_sample_bytes(224, 2)  # 256 of them: a batch of 0.1 GB
    451648
    """
    return size * size * (3 + 3 + 1 + depth_bytes) + 64


def fit_workers_to_shm(workers: int, prefetch: int, batch_bytes: int, free: int | None) -> tuple[int, int] | None:
    """(workers, batches ahead per worker) whose batches in flight, ``workers x prefetch x batch_bytes``,
    fit SHM_SHARE of ``free`` bytes of shared memory.

    ``batch_bytes``: what one batch ahead of one worker index holds over all loaders and processes
    that share the memory. As asked when it fits (or ``free`` is None, or no workers); else the most
    workers that fit one batch ahead each, with as many batches ahead as then fit (never more than
    asked): more workers decode more in parallel, a deeper queue only smooths. None: not one fits.

    >>> fit_workers_to_shm(15, 2, 100, 10_000)  # 3,000 bytes in flight fit in half of 10,000
    (15, 2)
    >>> fit_workers_to_shm(15, 2, 100, 2_000), fit_workers_to_shm(4, 4, 100, 2_000), fit_workers_to_shm(15, 2, 100, 150)
    ((10, 1), (4, 2), None)
    """
    room = None if free is None else int(free * SHM_SHARE)
    if workers == 0 or room is None or workers * prefetch * batch_bytes <= room:
        return workers, prefetch
    fitting = min(workers, room // batch_bytes)
    if fitting < 1:
        return None
    return fitting, max(1, min(prefetch, room // (fitting * batch_bytes)))

