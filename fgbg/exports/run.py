"""The export job: check the request, take the split, map the shards, join, put in place.

Views of the store, written by streaming over its shards through the one reader (any format,
single- or several-object stores), with the split ``fgbg train`` uses by default (see
:mod:`fgbg.exports`). The export is written into a temporary folder beside ``out`` with its
marker file (:data:`EXPORT_MARK`), made durable file by file, and renamed into place when
complete, so a folder at ``out`` is always a whole export; ``overwrite`` replaces only a
folder holding that marker.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgbg import __version__
from fgbg.engine import map_shards
from fgbg.errors import NotFound, UserError
from fgbg.exports.coco import coco_header, join_coco
from fgbg.exports.walk import PARTS_DIR, SPLITS, ExportJob, export_shard, part_path
from fgbg.exports.yolo import data_yaml
from fgbg.make.categories import store_categories
from fgbg.make.split import Split, split_indices
from fgbg.store.layout import atomic_write_json, fsync_dir, fsync_file, temporary
from fgbg.store.owned import FGBG_VERSION, check_ours, has_mark
from fgbg.store.read import StoreReader

FORMATS = ("coco", "yolo")
# the split `fgbg train` holds out by default (TrainConfig.val, .val_fraction, .seed; a test keeps them equal)
VAL_BY, VAL_FRACTION, VAL_SEED = "bg", 0.2, 0
EXPORT_MARK = ".fgbg-export.json"  # in every export's folder: what --overwrite may replace
FSYNC_THREADS = 16  # concurrent fsyncs share the file system's journal commits (a serial one waits for each)


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
        overwrite: replace an earlier export at ``out`` (a folder holding :data:`EXPORT_MARK`;
            any other non-empty folder is refused).
        workers: processes over the shards (None: one per CPU; 0: in this process).

    Raises:
        UserError: one line naming the flag or folder: an unknown format, --depth with yolo, a
            non-empty ``out`` without ``overwrite``, ``out`` inside the store or the store inside
            ``out``; NotOurs: ``overwrite`` of a folder that is not an export; NotFound: no such
            store, or not a store. Nothing is written or deleted before these checks.
    """
    check_request(Path(store), Path(out), to, depth, overwrite)
    store, out = Path(store).absolute(), Path(out).absolute()
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
            info = {"description": f"fgbg export of the store {store.name}", "version": __version__,
                    "fgbg": {"store": store.name, "split": split.record()}}  # fmt: skip
            first_id = 1
            for s in SPLITS:  # annotation ids run on across the splits, as the image ids do
                first_id += write_coco_split(tmp, len(reader.shards), s, coco_header(categories.names, info), first_id)
            shutil.rmtree(tmp / PARTS_DIR)
        else:
            val = "images/val" if images["val"] else "images/train"  # one bg: nothing held out
            (tmp / "data.yaml").write_text(data_yaml(categories.names, val))
        atomic_write_json(tmp / EXPORT_MARK, {FGBG_VERSION: __version__, "to": to, "store": store.name})
        put_in_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        reader.close()
    return ExportSummary(out, to, images, annotations, categories.names, note)


def check_request(store: Path, out: Path, to: str, depth: bool, overwrite: bool) -> None:
    """Refuse a request that cannot be done, before anything is written (see :func:`export_store`);
    the messages name the paths as given."""
    if to not in FORMATS:
        raise UserError(f"--to must be one of {', '.join(FORMATS)} for a store, got {to!r}")
    if depth and to != "coco":
        raise UserError("--depth copies depth maps beside a COCO export's images; export with `fgbg export coco`, or leave --depth out")
    if not store.exists():
        raise NotFound(f"{store}: no such store")
    if not store.is_dir():
        raise UserError(f"{store}: not a store folder; give a folder made by `fgbg generate`")
    if out.absolute() == store.absolute() or store.absolute() in out.absolute().parents or out.absolute() in store.absolute().parents:
        raise UserError(f"--out {out}: give a folder outside the store {store} (and not one that holds it)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file, not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out}: not empty; give a new or empty folder, or --overwrite to replace an earlier export")
    if overwrite:
        check_ours(out, has_mark(out, [EXPORT_MARK]), f"an fgbg export (it has no {EXPORT_MARK})")


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


def write_coco_split(tmp: Path, n_shards: int, split: str, header: dict, first_id: int = 1) -> int:
    """annotations/instances_SPLIT.json from the part files, in plan order, annotation ids from
    ``first_id``; returns how many annotations."""
    parts = lambda what: [p for j in range(n_shards) if (p := part_path(tmp, j, split, what)).exists()]  # noqa: E731
    with open(tmp / "annotations" / f"instances_{split}.json", "wb") as f:
        return join_coco(f, header, parts("images"), parts("annotations"), first_id)


def put_in_place(tmp: Path, out: Path) -> None:
    """Rename the finished export onto ``out`` (an old one there is removed first), durably."""
    fsync_tree(tmp)  # the files' bytes before the rename that makes them the export
    if out.exists():
        old = temporary(out, "replaced")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    fsync_dir(out.parent)


def fsync_tree(root: Path) -> None:
    """Make every file under ``root`` durable, then every folder (their entries), and nothing else
    of the machine. The files' fsyncs run concurrently: on ext4 one at a time costs a journal
    commit each (3 ms), together they share commits (0.1 ms a file)."""
    files, folders = [], []
    for folder, _, names in os.walk(root):
        folders.append(folder)
        files.extend(os.path.join(folder, n) for n in names)
    with ThreadPoolExecutor(FSYNC_THREADS) as pool:
        list(pool.map(fsync_file, files))
    for folder in folders:
        fsync_dir(Path(folder))


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
