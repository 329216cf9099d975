"""Read samples back from a store of any format, as (key, {member suffix: bytes})."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Iterator

from fgbg.store.layout import MEMBERS, read_dataset_json

Sample = tuple[str, dict[str, bytes]]


def iter_wds_file(path: Path) -> Iterator[Sample]:
    """Group a tar's contiguous members by key (split at the first dot)."""
    key, members = None, {}
    with tarfile.open(path, "r") as tar:
        for info in tar:
            if not info.isfile():
                continue
            k, suffix = info.name.split(".", 1)
            if k != key and key is not None:
                yield key, members
                members = {}
            key = k
            members[suffix] = tar.extractfile(info).read()
    if key is not None:
        yield key, members


def _iter_groups(store: Path, files: list[str], read_group) -> Iterator[Sample]:
    """folder/zip: read each kind's group, then zip them together by key."""
    groups = sorted({f.split("/", 1)[1].rstrip("/").removesuffix(".zip") for f in files})
    for group in groups:
        per_kind = {suffix: read_group(store / kind, group, ext) for suffix, (kind, ext) in MEMBERS.items()}
        first = per_kind["fg_bg.jpg"]
        for key in sorted(first):
            yield key, {suffix: per_kind[suffix][key] for suffix in MEMBERS}


def _read_folder_group(kind_dir: Path, group: str, ext: str) -> dict[str, bytes]:
    return {p.name.removesuffix(ext): p.read_bytes() for p in sorted((kind_dir / group).iterdir())}


def _read_zip_group(kind_dir: Path, group: str, ext: str) -> dict[str, bytes]:
    with zipfile.ZipFile(kind_dir / f"{group}.zip") as z:
        return {n.removesuffix(ext): z.read(n) for n in z.namelist()}


def iter_samples(store: Path, shards: list[int] | None = None) -> Iterator[Sample]:
    """Every sample of a complete store in plan order (or of the given shard indices)."""
    store = Path(store)
    meta = read_dataset_json(store)
    chosen = meta["shards"] if shards is None else [meta["shards"][i] for i in shards]
    for shard in chosen:
        files = list(shard["files"])
        if meta["format"] == "wds":
            yield from iter_wds_file(store / files[0])
        elif meta["format"] == "folder":
            yield from _iter_groups(store, files, _read_folder_group)
        else:
            yield from _iter_groups(store, files, _read_zip_group)
