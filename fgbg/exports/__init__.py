"""Exports: a store as the files detection and segmentation tools read (``fgbg export STORE --to coco|yolo``).

Views of the store, written by streaming over its shards through the one reader (any format,
single- or several-object stores), with the split ``fgbg train`` uses by default:

- ``coco`` (:mod:`fgbg.exports.coco`): ``images/{train,val}/KEY.jpg`` (the stored JPEG bytes),
  ``annotations/instances_{train,val}.json``; with ``depth``, ``depth/{train,val}/KEY.png``;
- ``yolo`` (:mod:`fgbg.exports.yolo`): ``images/{train,val}/KEY.jpg``, ``labels/{train,val}/KEY.txt``
  and ``data.yaml``.

The export is written into a temporary folder beside ``out`` and renamed into place when
complete, so a folder at ``out`` is always a whole export. The Hugging Face ``datasets``
library needs no export: ``load_dataset("webdataset", data_files=...)`` reads a wds store's shards.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgbg import __version__
from fgbg.engine import map_shards
from fgbg.errors import UserError
from fgbg.exports.coco import coco_header, join_coco
from fgbg.exports.walk import PARTS_DIR, SPLITS, ExportJob, export_shard, part_path
from fgbg.exports.yolo import data_yaml
from fgbg.make.categories import store_categories
from fgbg.make.split import Split, split_indices
from fgbg.store.layout import fsync_dir, temporary
from fgbg.store.read import StoreReader

FORMATS = ("coco", "yolo")
# the split `fgbg train` holds out by default (TrainConfig.val, .val_fraction, .seed; a test keeps them equal)
VAL_BY, VAL_FRACTION, VAL_SEED = "bg", 0.2, 0


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    to: str
    images: dict[str, int]  # per split
    annotations: dict[str, int]
    categories: list[str]
    note: str = ""

    def __str__(self) -> str:
        split = ", ".join(f"{self.images[s]} {s}" for s in SPLITS)
        what = "objects" if self.to == "yolo" else "annotations"
        text = (f"wrote {self.to.upper()} export {self.out}: {sum(self.images.values())} images ({split}),"
                f" {sum(self.annotations.values())} {what}, {len(self.categories)} categories")  # fmt: skip
        return f"{text}\n{self.note}" if self.note else text


def export_store(
    store: Path, out: Path, to: str, *, depth: bool = False, overwrite: bool = False, workers: int | None = None,
    progress: bool | None = None,
) -> ExportSummary:  # fmt: skip
    """Write the ``to`` ("coco" or "yolo") export of ``store`` to the folder ``out``.

    Args:
        depth: COCO only: also copy each depth map to ``depth/{split}/KEY.png``.
        overwrite: replace a non-empty ``out`` (else refused).
        workers: processes over the shards (None: one per CPU; 0: in this process).

    Raises:
        UserError: one line naming the flag or folder: an unknown format, --depth with yolo, a
            non-empty ``out`` without ``overwrite``, ``out`` inside the store or the store inside
            ``out``; not a store (NotFound). Nothing is written before these checks.
    """
    store, out = Path(store).absolute(), Path(out).absolute()
    check_request(store, out, to, depth, overwrite)
    reader = StoreReader(store)
    categories = store_categories(reader.meta)
    split, note = export_split(reader)
    is_val = np.zeros(len(reader), bool)
    is_val[split.val] = True
    tmp = temporary(out, "export")
    remove_stale(out)
    try:
        make_folders(tmp, to, depth)
        job = ExportJob(str(store), str(tmp), to, depth, is_val, tuple(categories.of_fg))
        counts = run_shards(job, reader, workers, progress)
        images = {s: sum(c[s][0] for c in counts.values()) for s in SPLITS}
        annotations = {s: sum(c[s][1] for c in counts.values()) for s in SPLITS}
        if to == "coco":
            info = {"description": f"fgbg export of {store}", "version": __version__,
                    "fgbg": {"store": str(store), "split": split.record()}}  # fmt: skip
            for s in SPLITS:
                write_coco_split(tmp, len(reader.shards), s, coco_header(categories.names, info))
            shutil.rmtree(tmp / PARTS_DIR)
        else:
            val = "images/val" if images["val"] else "images/train"  # one bg: nothing held out
            (tmp / "data.yaml").write_text(data_yaml(out, categories.names, val))
        put_in_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        reader.close()
    return ExportSummary(out, to, images, annotations, categories.names, note)


def check_request(store: Path, out: Path, to: str, depth: bool, overwrite: bool) -> None:
    """Refuse a request that cannot be done, before anything is written (see :func:`export_store`)."""
    if to not in FORMATS:
        raise UserError(f"--to must be one of {', '.join(FORMATS)} for a store, got {to!r}")
    if depth and to != "coco":
        raise UserError("--depth copies depth maps beside a COCO export's images; give --to coco, or leave --depth out")
    if not store.is_dir():
        raise UserError(f"{store}: not a store folder; give a folder made by `fgbg generate`")
    if out == store or store in out.parents or out in store.parents:
        raise UserError(f"--out {out}: give a folder outside the store {store} (and not one that holds it)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file, not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out}: not empty; give a new or empty folder, or --overwrite to replace it")


def export_split(reader: StoreReader) -> tuple[Split, str]:
    """The split ``fgbg train`` uses by default, and a note when the store cannot have one (a single bg)."""
    try:
        return split_indices(reader.plan, VAL_BY, VAL_FRACTION, VAL_SEED), ""
    except ValueError:
        n = len(reader)
        everything = Split(VAL_BY, VAL_FRACTION, VAL_SEED, [], list(range(n)), [])
        return everything, "the store has one background, so nothing is held out: every image is in train"


def make_folders(tmp: Path, to: str, depth: bool) -> None:
    kinds = ["images"] + (["labels"] if to == "yolo" else ["annotations", PARTS_DIR]) + (["depth"] if depth else [])
    for kind in kinds:
        for s in SPLITS if kind not in ("annotations", PARTS_DIR) else [""]:
            (tmp / kind / s).mkdir(parents=True, exist_ok=True)


def run_shards(job: ExportJob, reader: StoreReader, workers: int | None, progress: bool | None) -> dict[int, dict]:
    """Every shard's counts, by shard index."""
    shards = list(range(len(reader.shards)))
    weights = [int(reader.shards[j]["count"]) for j in shards]
    results = map_shards(_shard_with_index, shards, weights, workers, progress, shared=job, unit="image",
                         desc=f"export {job.to}", describe=lambda j: reader.shards[j]["name"])  # fmt: skip
    return dict(results)


def _shard_with_index(job: ExportJob, shard: int) -> tuple[int, dict]:
    return shard, export_shard(job, shard)


def write_coco_split(tmp: Path, n_shards: int, split: str, header: dict) -> int:
    """annotations/instances_SPLIT.json from the part files, in plan order."""
    parts = lambda what: [p for j in range(n_shards) if (p := part_path(tmp, j, split, what)).exists()]  # noqa: E731
    with open(tmp / "annotations" / f"instances_{split}.json", "wb") as f:
        return join_coco(f, header, parts("images"), parts("annotations"))


def put_in_place(tmp: Path, out: Path) -> None:
    """Rename the finished export onto ``out`` (an old one there is removed first), durably."""
    os.sync()  # the files' bytes before the rename that makes them the export
    if out.exists():
        old = temporary(out, "replaced")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    fsync_dir(out.parent)


def remove_stale(out: Path) -> None:
    """Temporary export folders beside ``out`` left by runs that were killed (their process is gone)."""
    for path in out.parent.glob(f"{out.name}.export.*.tmp"):
        pid = path.name.removeprefix(f"{out.name}.export.").removesuffix(".tmp")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
