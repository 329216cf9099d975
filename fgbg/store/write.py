"""Shard writers, one per format, all with one signature.

``write_shard(out, format, name, samples)`` writes the samples (key, {member: bytes}) of
one shard under temporary names, renames them into place when complete and returns
``{"files": {relative path: sha256}, "bytes": int, "count": int}``.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable

from fgbg.store.layout import MEMBERS, SHARDS_DIR, TMP_SUFFIX, bg_group, digest_members, sha256_file

Samples = Iterable[tuple[str, dict[str, bytes]]]
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed times make byte-identical archives


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_wds(out: Path, name: str, samples: Samples) -> dict:
    """One tar: members KEY.fg_bg.jpg, KEY.mask.png, ... contiguous per sample."""
    rel = f"{SHARDS_DIR}/{name}.tar"
    final = out / rel
    final.parent.mkdir(exist_ok=True)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    count = 0
    with open(tmp, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in samples:
                for suffix in MEMBERS:
                    data = members[suffix]
                    tar.addfile(_tar_info(f"{key}.{suffix}", len(data)), io.BytesIO(data))
                count += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return {"files": {rel: sha256_file(final)}, "bytes": final.stat().st_size, "count": count}


def write_folder(out: Path, name: str, samples: Samples) -> dict:
    """KIND/bNNN/KEY.ext, one sub-folder per bg per kind; sub-folders renamed in when done."""
    samples = list(samples)
    group = bg_group(samples[0][0])
    files, total = {}, 0
    for suffix, (kind, ext) in MEMBERS.items():
        final = out / kind / group
        tmp = final.with_name(group + TMP_SUFFIX)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        named = [(key + ext, members[suffix]) for key, members in samples]
        for file_name, data in named:
            (tmp / file_name).write_bytes(data)
            total += len(data)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        files[f"{kind}/{group}/"] = digest_members(named)
    return {"files": files, "bytes": total, "count": len(samples)}


def write_zip(out: Path, name: str, samples: Samples) -> dict:
    """KIND/bNNN.zip, one zip per bg per kind (the classic layout), stored uncompressed."""
    samples = list(samples)
    group = bg_group(samples[0][0])
    files, total = {}, 0
    for suffix, (kind, ext) in MEMBERS.items():
        rel = f"{kind}/{group}.zip"
        final = out / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            for key, members in samples:
                info = zipfile.ZipInfo(key + ext, FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                z.writestr(info, members[suffix])
        os.replace(tmp, final)
        files[rel] = sha256_file(final)
        total += final.stat().st_size
    return {"files": files, "bytes": total, "count": len(samples)}


WRITERS = {"wds": write_wds, "folder": write_folder, "zip": write_zip}


def write_shard(out: Path, format: str, name: str, samples: Samples) -> dict:
    return WRITERS[format](Path(out), name, samples)
