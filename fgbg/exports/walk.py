"""One pass over a store's shards that writes an export: the worker side of ``fgbg export coco|yolo``.

:func:`export_shard` is the pure function of (job, shard) the engine maps over the shards: it
reads the shard's samples in plan order through the one reader, writes each image (the stored
JPEG bytes) into ``images/{train,val}/`` and its labels (YOLO) or its lines of the COCO part
files, and returns small counts. Memory stays that of one sample.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fgbg import codecs
from fgbg.exports.coco import coco_annotation, coco_image, json_line
from fgbg.exports.instances import Instance, placed_fg_mask, several_instances, single_instance
from fgbg.exports.yolo import RowWriter
from fgbg.masks import outline
from fgbg.store.read import StoreReader, decoding

SPLITS = ("train", "val")
PARTS_DIR = ".parts"  # COCO part files, inside the temporary export folder
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


@dataclass(frozen=True)
class ExportJob:
    """What every shard's work needs (sent once to each worker process)."""

    store: str  # the store folder, absolute
    out: str  # the temporary export folder being written, absolute
    to: str  # "coco" or "yolo"
    depth: bool  # COCO: copy the depth maps to depth/{split}/KEY.png
    is_val: np.ndarray  # bool (N,): sample i (plan order) is in the val split
    fg_categories: tuple[int, ...]  # category id of every fg


def part_path(out: Path, shard: int, split: str, what: str) -> Path:
    """A COCO part file: .parts/SHARD.SPLIT.{images,annotations}.jsonl."""
    return Path(out) / PARTS_DIR / f"{shard:06d}.{split}.{what}.jsonl"


def write_file(path: str, data: bytes) -> None:
    """A new file of ``data`` (no Python buffer: one open, one write, one close)."""
    fd = os.open(path, NEW_FILE, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


_reader: StoreReader | None = None  # this process's reader, opened on its first shard


def reader_of(store: str) -> StoreReader:
    global _reader
    if _reader is None or str(_reader.store) != store:
        _reader = StoreReader(Path(store))
    return _reader


def export_shard(job: ExportJob, shard: int) -> dict[str, list[int]]:
    """Write the export of one shard; returns {split: [images, annotations]}."""
    reader = reader_of(job.store)
    several = reader.config.several  # annotated object by object: the json's objects are the instances
    ids_member = "instances.png" if several else "mask.png"  # YOLO outlines the objects' pixels
    needs_ids = job.to == "yolo" or not several  # a single object's COCO mask is mask.png's
    members = ("fg_bg.jpg", "json") + ((ids_member,) if needs_ids else ()) + (("depth.png",) if job.depth else ())
    frame, start = reader.config.frame, int(reader.shards[shard]["start"])
    write = CocoShard(job, shard, frame) if job.to == "coco" else YoloShard(job, frame)
    counts = {split: [0, 0] for split in SPLITS}
    try:
        for row, (key, data) in enumerate(reader.iter_shard(shard, members)):
            index = start + row
            split = SPLITS[int(job.is_val[index])]
            with reader.decoding(key, "json"):
                annotation = json.loads(data["json"])
            ids = None
            if needs_ids:
                with reader.decoding(key, ids_member):
                    ids = decode_ids(data[ids_member], several)
            instances = several_instances(annotation) if several else [one_instance(reader, job, annotation, ids)]
            write_file(f"{job.out}/images/{split}/{key}.jpg", data["fg_bg.jpg"])
            if job.depth:
                write_file(f"{job.out}/depth/{split}/{key}.png", data["depth.png"])
            counts[split][0] += 1
            counts[split][1] += write(split, index, key, instances, ids)
    finally:
        if job.to == "coco":
            write.close()
    return counts


def decode_ids(png: bytes, several: bool) -> np.ndarray:
    """Instance ids (S, S), 0 = bg: instances.png as stored (uint8, or uint16 above 255 objects),
    or a single-object store's mask.png (0/255) as id 1.

    Raises:
        ValueError: the PNG does not decode.
    """
    ids = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)  # libpng: faster than Pillow here
    if ids is None or ids.ndim != 2:
        raise ValueError("not a one-channel PNG")
    return ids if several else np.minimum(ids, 1)


def one_instance(reader: StoreReader, job: ExportJob, annotation: dict, mask: np.ndarray) -> Instance:
    """The object of a single-object sample: its mask.png, and its whole mask from the prepared fg if part of it is hidden."""

    def full_mask() -> np.ndarray:
        return placed_fg_mask(prepared_fg(job.store, annotation["fg"]), annotation, reader.config.frame)

    return single_instance(annotation, mask, job.fg_categories[annotation["fg"]], full_mask)


@functools.lru_cache(maxsize=128)  # a few MB: the fgs of a shard's hidden samples, decoded once
def prepared_fg(store: str, fg: int) -> np.ndarray:
    """uint8 (h, w, 4): the store's prepared fg ``fg`` (assets/fg), as the paste used it."""
    reader = reader_of(store)
    path = reader.asset_path("fg", fg)
    with decoding(str(path), reader.store):
        return codecs.decode_png(reader.read_asset("fg", fg))


class CocoShard:
    """One shard's lines of the COCO part files (images and annotations, per split), opened on first use."""

    def __init__(self, job: ExportJob, shard: int, frame: tuple[int, int]) -> None:
        self.job, self.shard, self.frame, self.files = job, shard, frame, {}

    def _file(self, split: str, what: str):
        f = self.files.get((split, what))
        if f is None:
            f = self.files[split, what] = open(part_path(Path(self.job.out), self.shard, split, what), "wb")
        return f

    def __call__(self, split: str, index: int, key: str, instances: list[Instance], ids: np.ndarray | None) -> int:
        """Write the image's entry and its annotations; returns how many annotations."""
        self._file(split, "images").write(json_line(coco_image(index, key, self.frame)))
        lines = [json_line(a) for a in (coco_annotation(o, index + 1) for o in instances) if a is not None]
        if lines:
            self._file(split, "annotations").write(b"".join(lines))
        return len(lines)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class YoloShard:
    """One label file per image: a row per object seen (class = category id - 1, its visible outline)."""

    def __init__(self, job: ExportJob, frame: tuple[int, int]) -> None:
        self.out, self.rows = job.out, RowWriter(frame)

    def __call__(self, split: str, index: int, key: str, instances: list[Instance], ids: np.ndarray) -> int:
        """Write the image's label file from its instance ids (uint (H, W), 0 = bg); returns how many rows."""
        rows = []
        for o in instances:
            if o.area > 0:
                x, y, w, h = o.box
                seen = (ids[y : y + h, x : x + w] == o.id).view(np.uint8)  # 0/1 in the object's box
                rows.append(self.rows.row(o.category - 1, outline(seen, (x, y))))
        write_file(f"{self.out}/labels/{split}/{key}.txt", b"".join(rows))
        return len(rows)
