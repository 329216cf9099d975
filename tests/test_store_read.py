"""The one store reader: the same bytes as outside readers, random access, per-process files,
stores without member indexes, damaged members named, and a small index."""

import io
import json
import multiprocessing
import os
import pickle
import random
import tarfile
import tracemalloc
import zipfile

import pytest
import webdataset as wds

from fgbg.errors import CorruptStore
from fgbg.store import StoreReader, read_dataset_json
from fgbg.store.tarscan import scan_tar

from .conftest import make_store


make = make_store


@pytest.fixture
def store(folders, tmp_path):
    return make(folders, tmp_path / "wds")


def drop_indexes(store, records=True):
    """Make ``store`` look as an older fgbg wrote it: no .idx files (and, with records, none listed)."""
    for path in (store / "shards").glob("*.idx"):
        path.unlink()
    if records:
        meta = json.loads((store / "dataset.json").read_text())
        for shard in meta["shards"]:
            shard.pop("idx")
        (store / "dataset.json").write_text(json.dumps(meta))


def test_wds_reader_reads_what_webdataset_and_tarfile_read(store):
    meta = read_dataset_json(store)
    tars = [str(store / rel) for s in meta["shards"] for rel in s["files"]]
    assert all(t.endswith(".tar") for t in tars) and all(s["idx"] for s in meta["shards"])
    theirs = [
        (s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")}) for s in wds.WebDataset(tars, shardshuffle=False)
    ]
    ours = list(StoreReader(store).iter_samples())
    assert len(ours) == 36 and ours == theirs
    with tarfile.open(tars[2]) as tar:
        by_tarfile = {info.name: tar.extractfile(info).read() for info in tar}
    assert {f"{key}.{s}": data for key, m in StoreReader(store).iter_shard(2) for s, data in m.items()} == by_tarfile


@pytest.mark.parametrize("fmt", ["wds", "folder", "zip"])
def test_random_access_by_key_or_position_equals_sequential_reading_of_the_files(folders, tmp_path, fmt):
    store = make(folders, tmp_path / fmt, format=fmt)
    reader = StoreReader(store)
    sequential = list(reader.iter_samples())
    assert len(sequential) == 36 and len(reader) == 36
    order = list(range(len(sequential)))
    random.Random(0).shuffle(order)
    for i in order:
        key, members = sequential[i]
        assert reader.key(i) == key and reader.index_of(key) == i
        assert reader.read(key) == members and reader.read(i) == members
        assert reader.read(key, ("mask.png",)) == {"mask.png": members["mask.png"]}
    with pytest.raises(KeyError):
        reader.index_of("b009_f000_0_00")
    for key, members in sequential if fmt != "wds" else []:  # what the files hold (wds: the test above)
        group = key.split("_")[0]
        for suffix, (kind, ext) in reader.members():
            if fmt == "folder":
                expected = (store / kind / group / f"{key}{ext}").read_bytes()
            else:
                with zipfile.ZipFile(store / kind / f"{group}.zip") as z:
                    expected = z.read(key + ext)
            assert members[suffix] == expected


def test_a_store_without_member_indexes_still_reads(store):
    expected = list(StoreReader(store).iter_samples())
    drop_indexes(store, records=False)  # listed in dataset.json, but the files are gone
    assert list(StoreReader(store).iter_samples()) == expected
    drop_indexes(store)  # as an older fgbg wrote it
    reader = StoreReader(store)
    assert [reader.read(key) for key, _ in expected[::-1]] == [m for _, m in expected[::-1]]


def test_a_stale_index_is_not_trusted(store):
    """A tar rewritten (here: with a bigger first member) while its .idx stays: the tar wins."""
    path = store / "shards" / "shard-000000.tar"
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for n, (info, data) in enumerate(members):
            data = data + b"\0" * 2000 if n == 0 else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert StoreReader(store).read(1) == {s: d for (info, d) in members[4:8] for s in [info.name.split(".", 1)[1]]}


def _read_in_child(i: int):
    reader = _FORKED["reader"]
    data = reader.read(i)
    return os.getpid(), reader._pid, dict(reader._files), data


_FORKED: dict = {}


def test_a_forked_or_spawned_worker_opens_its_own_files(store):
    reader = StoreReader(store)
    mine = reader.read(0)
    parent_fd = reader._files["shards/shard-000000.tar"]
    _FORKED["reader"] = reader
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pid, reader_pid, files, data = pool.apply(_read_in_child, (0,))
    assert data == mine and pid != os.getpid() and reader_pid == pid
    assert files["shards/shard-000000.tar"] != parent_fd  # a descriptor of its own
    shipped = pickle.loads(pickle.dumps(reader))
    assert shipped._files == {} and shipped._tables == {} and shipped.read(0) == mine
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(shipped.read, (0,)) == mine


def test_loaded_index_costs_64_bytes_per_sample(folders, tmp_path):
    store = make(folders, tmp_path / "many", size=16, fg_size=8, placements=150, shard_size=300)  # 2700 samples
    reader = StoreReader(store)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for j in range(len(reader.shards)):
        reader.table(j)
    held = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert len(reader) == 2700 and len(reader.shards) == 9
    assert sum(t.nbytes for t in reader._tables.values()) == 64 * len(reader)
    assert held / len(reader) < 100  # 400k samples: under 40 MB
    assert all(path.stat().st_size == 24 + 64 * 300 for path in (store / "shards").glob("*.idx"))


def test_damaged_members_are_named(folders, tmp_path, store):
    reader = StoreReader(store)
    key = reader.key(9)  # shard 1, row 2
    tar = store / "shards" / "shard-000001.tar"
    offset, size = reader.table(1)[2, 1].tolist()  # its mask
    tar.write_bytes(tar.read_bytes()[: offset + size // 2])
    with pytest.raises(CorruptStore, match=rf"shard-000001\.tar member {key}\.mask\.png: cut short .*fgbg verify"):
        StoreReader(store).read(key)
    folder = make(folders, tmp_path / "folder", format="folder")
    path = folder / "depth" / "b001" / "b001_f002_1_01.png"
    path.unlink()
    with pytest.raises(CorruptStore, match=f"{path}: missing; run `fgbg verify {folder}`"):
        StoreReader(folder).read("b001_f002_1_01")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 22)  # a truncated 30-byte PNG
    reader = StoreReader(folder)
    data = reader.read("b001_f002_1_01")["depth.png"]
    with pytest.raises(CorruptStore, match=f"{path}: does not decode"):
        reader.decode("b001_f002_1_01", "depth.png", data)


def test_header_scan_reads_what_tarfile_reads(tmp_path):
    buf = io.BytesIO()  # plain members, then a long (GNU) name: handed over to tarfile
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("a.txt", b"abc"), ("b.txt", b""), ("x" * 150 + ".txt", b"defg")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = [(i.name, i.offset_data, i.size) for i in tar]
    assert [(m.name, m.offset, m.size) for m in scan_tar(io.BytesIO(data), len(data))] == expected
    with pytest.raises(tarfile.ReadError, match="cut short"):
        list(scan_tar(io.BytesIO(data[:1000]), 1000))
