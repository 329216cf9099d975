"""The one reader of a store, in every format (wds, folder, zip).

    reader = StoreReader(store)
    reader.meta                       dataset.json, read once
    len(reader), reader.key(i)        samples in plan order; keys come from the plan, none is stored
    reader.index_of(key)              a key's plan position
    reader.read(i or key, members)    {member suffix: bytes}: random access
    reader.iter_shard(j)              (key, {suffix: bytes}) of shard j, in plan order
    reader.iter_samples(shards)       the same over several shards (default: all)
    reader.decode(i, suffix, data)    a member as an array (json: a dict)
    reader.scan_shard(j)              everything a shard's files hold, damage listed (for verify)

A wds shard is read through its member index (``shards/shard-NNNNNN.idx``, written with the
tar; see :mod:`fgbg.store.tarscan`), loaded on first use: 64 bytes per sample. A store
made by an older fgbg has no index: each shard's tar headers are scanned once, on first
use. Files are opened lazily and belong to the process that opened them: a forked worker
(DataLoader, process pool) opens its own, and pickling drops them (spawned workers).

A member that is missing, cut short or does not decode raises :class:`CorruptMember` (a
:class:`fgbg.errors.CorruptStore`): one line naming the file, and saying run `fgbg verify`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.errors import CorruptStore
from fgbg.store.layout import MEMBERS, asset_paths, bg_group, digest_members, read_dataset_json, store_members
from fgbg.store.plan import Plan, Shard
from fgbg.store.tarscan import BLOCK, decode_index, scan_tar

Sample = tuple[str, dict[str, bytes]]
SUFFIXES: tuple[str, ...] = tuple(MEMBERS)  # every member a store may hold; a store's own: StoreReader.suffixes
MAX_OPEN = 64  # open files kept per process (a zip store has 4 per bg)
# What decoding damaged bytes raises: simplejpeg/codecs (ValueError), Pillow (OSError,
# SyntaxError, DecompressionBombError), zlib, struct, json (ValueError).
DECODE_ERRORS = (ValueError, OSError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


class CorruptMember(CorruptStore):
    """A store file or member is missing, cut short or does not decode; one line naming it.

    Stays one line when a DataLoader worker re-raises it in the main process (torch wraps
    the message in the worker's traceback; only the original line is kept).
    """

    def __init__(self, message: str) -> None:
        if "Traceback (most recent call last)" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def decode_member(suffix: str, data: bytes):
    """Member bytes -> uint8 (H, W, 3) (fg_bg.jpg), uint8/uint16 (H, W) (mask.png, depth.png), dict (json)."""
    if suffix.endswith(".jpg"):
        return codecs.decode_jpeg(data)
    if suffix.endswith(".png"):
        return codecs.decode_png_gray(data)
    return json.loads(data)


def reason(error: BaseException) -> str:
    """A short cause for a one-line message."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@contextmanager
def decoding(where: str | Callable[[], str], store: Path) -> Iterator[None]:
    """Turn a decoding failure inside the block into a :class:`CorruptMember` naming ``where``
    (a string, or a function giving it, called only on failure)."""
    try:
        yield
    except DECODE_ERRORS as e:
        place = where() if callable(where) else where
        raise CorruptMember(f"{place}: does not decode ({reason(e)}); run `fgbg verify {store}` to list every damaged file") from None


@dataclass
class ShardScan:
    """Everything one shard's files hold, read as far as they go (what verify checks)."""

    samples: dict[str, dict[str, bytes]] = field(default_factory=dict)  # key -> {suffix: bytes}, as found
    problems: list[str] = field(default_factory=list)  # damage met while reading, one line each (relative paths)


class StoreReader:
    """Random and sequential access to a complete store's samples (any format).

    Args:
        store: the store folder.
        meta: its dataset.json if already read (else read here, once).

    Raises:
        FileNotFoundError: no dataset.json.
    """

    def __init__(self, store: Path, meta: dict | None = None) -> None:
        self.store = Path(store)
        self.meta = read_dataset_json(self.store) if meta is None else meta
        self.format: str = self.meta["format"]
        self.config = GenerateConfig.from_dict(self.meta["config"])
        self.suffixes: tuple[str, ...] = store_members(self.meta["config"])  # this store's members, in MEMBERS order
        self.objects: int = self.config.objects_max  # most objects a composite holds (1: no instances member)
        self.plan = Plan.from_config(int(self.meta["counts"]["bg"]), int(self.meta["counts"]["fg"]), self.config)
        self.shards: list[dict] = self.meta["shards"]
        self._starts = np.array([s["start"] for s in self.shards], np.int64)
        self._pid = os.getpid()
        self._files: OrderedDict[str, object] = OrderedDict()  # relative path -> fd or ZipFile, this process's
        self._tables: dict[int, np.ndarray] = {}  # wds shard -> int64 (N, M, 2) (offset, size); -1 = absent
        self._assets: dict[str, list[Path]] = {}

    # ------------------------------------------------------------ keys and places

    def members(self) -> list[tuple[str, tuple[str, str]]]:
        """(suffix, (kind folder, extension)) of this store's members, in MEMBERS order."""
        return [(suffix, MEMBERS[suffix]) for suffix in self.suffixes]

    def __len__(self) -> int:
        return len(self.plan)

    @property
    def entries(self) -> Plan:
        """The samples in plan order: ``entries[i]`` has .key, .bg, .fg, .flip, .k (the plan itself)."""
        return self.plan

    def key(self, i: int) -> str:
        return self.plan[i].key

    def keys(self, shard: int | None = None) -> Iterator[str]:
        """Keys in plan order, of one shard or of the whole store."""
        if shard is None:
            return (self.plan[i].key for i in range(len(self.plan)))
        record = self.shards[shard]
        return (ref.key for ref in self.plan.samples(Shard(shard, record["start"], record["start"] + record["count"])))

    def index_of(self, key: str) -> int:
        """The plan position of ``key``.

        Raises:
            KeyError: no sample of this store has that key.
        """
        i = self.plan.index(key)
        if i is not None:
            return i
        raise KeyError(f"{self.store}: no sample {key!r}")

    def _position(self, item: int | str) -> int:
        i = self.index_of(item) if isinstance(item, str) else int(item)
        if not 0 <= i < len(self.plan):
            raise IndexError(f"{self.store}: sample {i} of {len(self.plan)}")
        return i

    def locate(self, item: int | str) -> tuple[int, int]:
        """(shard index, row in that shard) of a sample."""
        i = self._position(item)
        j = int(np.searchsorted(self._starts, i, side="right")) - 1
        return j, i - int(self._starts[j])

    def group(self, shard: int) -> str:
        """bNNN: the bg group a folder/zip shard holds (from its first file)."""
        return next(iter(self.shards[shard]["files"])).split("/")[1].removesuffix(".zip")

    def tar_of(self, shard: int) -> str:
        return next(iter(self.shards[shard]["files"]))

    def where(self, item: int | str, suffix: str) -> str:
        """A member's place, for messages: STORE/shards/shard-000002.tar member KEY.mask.png,
        STORE/mask/b000/KEY.png, or STORE/mask/b000.zip member KEY.png."""
        key = self.key(self._position(item)) if not isinstance(item, str) else item
        kind, ext = MEMBERS[suffix]
        if self.format == "wds":
            return f"{self.store / self.tar_of(self.locate(key)[0])} member {key}.{suffix}"
        if self.format == "folder":
            return str(self.store / kind / bg_group(key) / f"{key}{ext}")
        return f"{self.store / kind / bg_group(key)}.zip member {key}{ext}"

    def _corrupt(self, where: str, what: str) -> CorruptMember:
        return CorruptMember(f"{where}: {what}; run `fgbg verify {self.store}` to list every damaged file")

    # ------------------------------------------------------------ files, per process

    def _handle(self, rel: str):
        """This process's open fd (tar) or ZipFile of ``rel``, opened on first use."""
        if self._pid != os.getpid():  # a forked child: the parent's handles are not ours to use
            self._pid, self._files = os.getpid(), OrderedDict()
        handle = self._files.get(rel)
        if handle is not None:
            self._files.move_to_end(rel)
            return handle
        path = self.store / rel
        try:
            handle = zipfile.ZipFile(path) if rel.endswith(".zip") else os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self._corrupt(str(path), "missing") from None
        except (zipfile.BadZipFile, OSError) as e:
            raise self._corrupt(str(path), f"unreadable ({reason(e)})") from None
        self._files[rel] = handle
        if len(self._files) > MAX_OPEN:
            _close(self._files.popitem(last=False)[1])
        return handle

    def close(self) -> None:
        """Close this process's files (they reopen on the next read)."""
        if self._pid == os.getpid():
            for handle in self._files.values():
                _close(handle)
        self._files = OrderedDict()

    def __getstate__(self) -> dict:
        # never ship handles (or the index tables, reloaded lazily) to a spawned process
        return {**self.__dict__, "_files": OrderedDict(), "_tables": {}, "_pid": None}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to close with
            pass

    # ------------------------------------------------------------ the wds member index

    def table(self, shard: int) -> np.ndarray:
        """int64 (N, M, 2): (data offset, size) of every member of a wds shard (-1: absent).

        Read from the shard's .idx (checked against its sha256 in dataset.json, and against
        the tar's headers of its first and last member); a shard without a usable one (an
        older store, or a tar rewritten since) has its tar headers scanned, once. A cut tar
        keeps its index, so a read past the cut names the member it cuts.
        """
        table = self._tables.get(shard)
        if table is None:
            table = self._load_index(shard)
            if table is None:
                table = self._scan_index(shard)
            self._tables[shard] = table
        return table

    def _load_index(self, shard: int) -> np.ndarray | None:
        record = self.shards[shard]
        for rel, digest in record.get("idx", {}).items():
            try:
                raw = (self.store / rel).read_bytes()
            except OSError:
                return None
            if hashlib.sha256(raw).hexdigest() != digest:
                return None
            try:
                table = decode_index(np.frombuffer(raw, "<u8"), record["count"], len(self.suffixes))
            except ValueError:
                return None
            return table if self._headers_agree(shard, table) else None
        return None

    def _headers_agree(self, shard: int, table: np.ndarray) -> bool:
        """The tar headers just before the first and the last member the index places name
        those members (a header past a cut is not held against it: reads there say so)."""
        fd = self._handle(self.tar_of(shard))
        start, last = int(self.shards[shard]["start"]), len(table) - 1
        for row, column in ((0, 0), (last, len(self.suffixes) - 1)):
            header = os.pread(fd, BLOCK, int(table[row, column, 0]) - BLOCK)
            name = f"{self.key(start + row)}.{self.suffixes[column]}".encode()
            if len(header) == BLOCK and header[:100].split(b"\0", 1)[0] != name:
                return False
        return True

    def _scan_index(self, shard: int) -> np.ndarray:
        """The table of a shard from its tar headers (one pass, reading headers only)."""
        rel = self.tar_of(shard)
        rows = {key: r for r, key in enumerate(self.keys(shard))}
        table = np.full((len(rows), len(self.suffixes), 2), -1, np.int64)
        column = {suffix: c for c, suffix in enumerate(self.suffixes)}
        path = self.store / rel
        try:
            with open(path, "rb") as f:
                for member in scan_tar(f, os.fstat(f.fileno()).st_size):
                    key, _, suffix = member.name.partition(".")
                    if member.regular and key in rows and suffix in column:
                        table[rows[key], column[suffix]] = (member.offset, member.size)
        except FileNotFoundError:
            raise self._corrupt(str(path), "missing") from None
        except (tarfile.TarError, OSError) as e:
            raise self._corrupt(str(path), f"unreadable ({reason(e)})") from None
        return table

    # ------------------------------------------------------------ reading

    def read(self, item: int | str, members: tuple[str, ...] | None = None) -> dict[str, bytes]:
        """The members of one sample (by plan position or key): {suffix: bytes}, in MEMBERS order
        (default: every member of the store, :attr:`suffixes`).

        Raises:
            CorruptMember: a member is missing or cut short, or its file is unreadable.
        """
        i = self._position(item)
        j, row = self.locate(i)
        return self._read(j, row, self.key(i), members or self.suffixes)

    def _read(self, shard: int, row: int, key: str, members: tuple[str, ...]) -> dict[str, bytes]:
        if self.format == "wds":
            return self._read_tar(shard, row, key, members)
        group = bg_group(key)
        out = {}
        for suffix in members:
            kind, ext = MEMBERS[suffix]
            if self.format == "folder":
                path = self.store / kind / group / f"{key}{ext}"
                try:
                    out[suffix] = path.read_bytes()
                except FileNotFoundError:
                    raise self._corrupt(str(path), "missing") from None
                except OSError as e:
                    raise self._corrupt(str(path), f"unreadable ({reason(e)})") from None
            else:
                z = self._handle(f"{kind}/{group}.zip")
                try:
                    out[suffix] = z.read(f"{key}{ext}")
                except KeyError:
                    raise self._corrupt(self.where(key, suffix), "missing") from None
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                    raise self._corrupt(self.where(key, suffix), f"unreadable ({reason(e)})") from None
        return out

    def _read_tar(self, shard: int, row: int, key: str, members: tuple[str, ...]) -> dict[str, bytes]:
        fd = self._handle(self.tar_of(shard))
        return self._pread(fd, key, self.table(shard)[row].tolist(), members)

    def _pread(self, fd: int, key: str, places: list[list[int]], members: tuple[str, ...]) -> dict[str, bytes]:
        """``members`` of one sample from a tar's descriptor, at ``places`` [(offset, size)] in MEMBERS order."""
        out = {}
        for suffix in members:
            offset, size = places[self.suffixes.index(suffix)]
            if size < 0:
                raise self._corrupt(self.where(key, suffix), "missing")
            data = os.pread(fd, size, offset)
            if len(data) != size:
                raise self._corrupt(self.where(key, suffix), f"cut short ({len(data)} of {size} bytes; a truncated shard?)")
            out[suffix] = data
        return out

    def iter_shard(self, shard: int, members: tuple[str, ...] | None = None) -> Iterator[Sample]:
        """(key, {suffix: bytes}) of every sample of one shard, in plan order."""
        members = members or self.suffixes
        if self.format != "wds":
            for row, key in enumerate(self.keys(shard)):
                yield key, self._read(shard, row, key, members)
            return
        rel, places = self.tar_of(shard), self.table(shard).tolist()
        for key, place in zip(self.keys(shard), places):
            # the descriptor is looked up per sample: between two yields it may have been closed (MAX_OPEN)
            yield key, self._pread(self._handle(rel), key, place, members)

    def iter_samples(self, shards: list[int] | None = None, members: tuple[str, ...] | None = None) -> Iterator[Sample]:
        """Every sample in plan order (or those of the given shard indices)."""
        for j in range(len(self.shards)) if shards is None else shards:
            yield from self.iter_shard(j, members)

    def decode(self, item: int | str, suffix: str, data: bytes):
        """A member's bytes decoded (see :func:`decode_member`), or :class:`CorruptMember` naming it."""
        with decoding(lambda: self.where(item, suffix), self.store):
            return decode_member(suffix, data)

    def decoding(self, item: int | str, suffix: str):
        """A context in which a decoding failure becomes a :class:`CorruptMember` naming the member."""
        return decoding(lambda: self.where(item, suffix), self.store)

    # ------------------------------------------------------------ prepared assets

    def asset_path(self, kind: str, i: int) -> Path:
        """assets/KIND/... of bg or fg ``i`` (kind: bg, bg_depth, fg, fg_mask)."""
        if kind not in self._assets:
            n = self.meta["counts"]["bg" if kind.startswith("bg") else "fg"]
            self._assets[kind] = asset_paths(self.store, kind, n)
        return self._assets[kind][i]

    def read_asset(self, kind: str, i: int) -> bytes:
        path = self.asset_path(kind, i)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise self._corrupt(str(path), "missing") from None

    # ------------------------------------------------------------ everything, tolerantly (verify)

    def scan_shard(self, shard: int) -> ShardScan:
        """Every member a shard's files hold, planned or not, reading each file as far as it goes.

        Damage (an unreadable or cut tar or zip, a duplicate, a non-file, an unexpected file, a
        folder whose digest differs, a member index that disagrees with its tar) is listed as
        problem lines with paths relative to the store; nothing is raised for it.
        """
        scan = ShardScan()
        if self.format == "wds":
            self._scan_tar(shard, scan)
        elif self.format == "folder":
            self._scan_folder(shard, scan)
        else:
            self._scan_zip(shard, scan)
        return scan

    def _scan_tar(self, shard: int, scan: ShardScan) -> None:
        rel = self.tar_of(shard)
        path = self.store / rel
        if not path.is_file():
            return  # reported missing by the sha256 check
        places: dict[tuple[str, str], tuple[int, int]] = {}
        data = path.read_bytes()
        try:
            for member in scan_tar(io.BytesIO(data), len(data)):
                if not member.regular:
                    scan.problems.append(f"{rel}: {member.name}: not a regular file")
                    continue
                key, _, suffix = member.name.partition(".")
                if suffix in scan.samples.setdefault(key, {}):
                    scan.problems.append(f"{rel}: {member.name}: duplicate member")
                scan.samples[key][suffix] = data[member.offset : member.offset + member.size]
                places[key, suffix] = (member.offset, member.size)
        except tarfile.TarError as e:
            scan.problems.append(f"{rel}: unreadable after {len(scan.samples)} sample(s): {e}")
            return
        scan.problems += self._index_agrees(shard, places)

    def _index_agrees(self, shard: int, places: dict[tuple[str, str], tuple[int, int]]) -> list[str]:
        """The shard's .idx (if any) against the offsets found in its tar."""
        record = self.shards[shard]
        problems = []
        for rel in record.get("idx", {}):
            path = self.store / rel
            if not path.is_file():
                return []  # reported missing by the sha256 check
            try:
                table = decode_index(np.fromfile(path, "<u8"), record["count"], len(self.suffixes))
            except ValueError as e:
                return [f"{rel}: not the member index of {self.tar_of(shard)} ({e})"]
            wrong = sum(
                places.get((key, suffix)) != tuple(table[row, c].tolist())
                for row, key in enumerate(self.keys(shard))
                for c, suffix in enumerate(self.suffixes)
            )
            if wrong:
                problems.append(f"{rel}: {wrong} member offset(s) disagree with {self.tar_of(shard)}")
        return problems

    def _scan_folder(self, shard: int, scan: ShardScan) -> None:
        group = self.group(shard)
        record = self.shards[shard]
        for suffix, (kind, ext) in self.members():
            rel = f"{kind}/{group}/"
            folder = self.store / rel
            if not folder.is_dir():
                scan.problems.append(f"{rel}: missing")
                continue
            named = []
            for path in sorted(folder.iterdir()):
                if not path.is_file() or not path.name.endswith(ext):
                    scan.problems.append(f"{rel}{path.name}: unexpected {'folder' if path.is_dir() else 'file'}")
                    continue
                data = path.read_bytes()
                named.append((path.name, data))
                scan.samples.setdefault(path.name.removesuffix(ext), {})[suffix] = data
            if rel in record["files"] and digest_members(named) != record["files"][rel]:
                scan.problems.append(f"{rel}: sha256 of its files differs from dataset.json (changed, missing or extra files)")

    def _scan_zip(self, shard: int, scan: ShardScan) -> None:
        group = self.group(shard)
        for suffix, (kind, ext) in self.members():
            rel = f"{kind}/{group}.zip"
            if not (self.store / rel).is_file():
                continue  # reported missing by the sha256 check
            try:
                with zipfile.ZipFile(self.store / rel) as z:
                    for name in z.namelist():
                        if not name.endswith(ext) or "/" in name:
                            scan.problems.append(f"{rel}: {name}: unexpected member")
                            continue
                        scan.samples.setdefault(name.removesuffix(ext), {})[suffix] = z.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
                scan.problems.append(f"{rel}: unreadable: {e}")


def _close(handle) -> None:
    if isinstance(handle, zipfile.ZipFile):
        handle.close()
    else:
        os.close(handle)


def iter_samples(store: Path, shards: list[int] | None = None) -> Iterator[Sample]:
    """Every sample of a complete store in plan order (or of the given shard indices)."""
    reader = StoreReader(store)
    try:
        yield from reader.iter_samples(shards)
    finally:
        reader.close()
