"""Names and paths inside a store, and atomic file writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# member suffix -> (folder for the folder/zip formats, file extension there)
MEMBERS: dict[str, tuple[str, str]] = {
    "fg_bg.jpg": ("fg_bg", ".jpg"),
    "mask.png": ("mask", ".png"),
    "depth.png": ("depth", ".png"),
    "json": ("annotation", ".json"),
}
DATASET_JSON = "dataset.json"
MANIFEST = "manifest.jsonl"
SHARDS_DIR = "shards"
ASSETS_DIR = "assets"
WORK_DIR = ".work"  # in-progress state; removed when the store is complete
TMP_SUFFIX = ".tmp"


def fsync_dir(folder: Path) -> None:
    """Make a rename (or a new file) in ``folder`` durable: without it a power cut can undo it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> None:
    """Rename a complete, already fsynced ``tmp`` onto ``final`` and make the rename durable."""
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to ``path.tmp``, fsync, then rename: readers see all or nothing."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    commit(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def read_dataset_json(store: Path) -> dict:
    path = Path(store) / DATASET_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; is {store} a complete fgbg store? run `fgbg generate` first")
    return json.loads(path.read_text())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_members(members) -> str:
    """sha256 over (name, bytes) pairs in order: the checksum of a folder-format shard."""
    h = hashlib.sha256()
    for name, data in members:
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def bg_group(key: str) -> str:
    """The bg part of a key, ``b000`` of ``b000_f001_0_03``: the folder/zip group name."""
    return key.split("_", 1)[0]
