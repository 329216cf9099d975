"""fgbg verify: a fresh store of each format passes; each corruption is caught, one line each."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fgbg import codecs
from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.make.generate import generate
from fgbg.inspect.verify import verify

from .conftest import SMALL

SHARD = "shards/shard-000001.tar"


def make(folders, out, **overrides) -> Path:
    generate(*folders, out, GenerateConfig(**{**SMALL, **overrides}), workers=0, progress=False)
    return out


def problems(store) -> list[str]:
    return verify(store, workers=0).problems


def rewrite_tar(store: Path, rel: str, change) -> None:
    """Rewrite a tar shard through change(name, data) -> bytes or None (drop the member),
    then record its new sha256 in dataset.json, so only the changed content is wrong; its
    member index goes, as if an older fgbg had written the shard."""
    path = store / rel
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            new = change(info.name, data)
            if new is not None:
                info.size = len(new)
                tar.addfile(info, io.BytesIO(new))
    meta = json.loads((store / "dataset.json").read_text())
    for shard in meta["shards"]:
        if rel in shard["files"]:
            shard["files"][rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            for idx in shard.pop("idx", {}):
                (store / idx).unlink()
    (store / "dataset.json").write_text(json.dumps(meta, indent=1))


@pytest.fixture
def store(folders, tmp_path):
    return make(folders, tmp_path / "store")


@pytest.mark.parametrize("fmt", ["wds", "folder", "zip"])
def test_a_fresh_store_of_each_format_passes(folders, tmp_path, fmt):
    store = make(folders, tmp_path / fmt, format=fmt)
    report = verify(store, workers=0)
    assert report.ok, report.problems
    assert report.samples == 36 and "every check passed" in str(report)


def test_a_flipped_byte_is_caught(store):
    path = store / SHARD
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    found = problems(store)
    assert any(line.startswith(f"{SHARD}: sha256 differs") for line in found), found


def test_a_missing_shard_is_caught(store):
    (store / SHARD).unlink()
    assert problems(store) == [f"{SHARD}: missing (shard-000001, 7 samples)"]


def test_a_truncated_shard_is_caught(store):
    path = store / SHARD
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    found = problems(store)
    assert any(line.startswith(f"{SHARD}: sha256 differs") for line in found), found
    assert any("missing sample(s)" in line or "unreadable" in line for line in found), found


def test_a_missing_member_is_caught(store):
    victim = {}

    def drop_one_mask(name, data):
        if name.endswith(".mask.png") and not victim:
            victim["name"] = name
            return None
        return data

    rewrite_tar(store, SHARD, drop_one_mask)
    assert problems(store) == [f"{SHARD}: {victim['name']}: missing member"]


def test_a_non_binary_mask_is_caught(store):
    victim = {}

    def grey_pixel(name, data):
        if name.endswith(".mask.png") and not victim:
            victim["name"] = name
            mask = codecs.decode_png(data).copy()
            mask[0, 0] = 128
            return codecs.encode_png_gray(mask)
        return data

    rewrite_tar(store, SHARD, grey_pixel)
    found = problems(store)
    assert len(found) == 1, found
    assert found[0].startswith(f"{SHARD}: {victim['name']}: not binary: 1 pixel(s) neither 0 nor 255 (e.g. 128)")


def test_a_wrong_size_member_is_caught(store):
    def small_depth(name, data):
        return codecs.encode_png_gray(np.zeros((8, 8), np.uint8)) if name.endswith(".depth.png") else data

    rewrite_tar(store, SHARD, small_depth)
    found = problems(store)
    assert len(found) == 7 and all("is 8x8, expected 64x64" in line for line in found), found


def test_a_stray_temporary_file_is_caught(store):
    (store / "shards" / "shard-000009.tar.tmp").write_bytes(b"half a shard")
    assert problems(store) == ["shards/shard-000009.tar.tmp: temporary file left by an interrupted write; remove it"]


def test_stray_files_and_an_unfinished_run_are_caught(store):
    (store / "notes.txt").write_text("mine")
    (store / "shards" / "extra.tar").write_bytes(b"")
    (store / ".work").mkdir()
    found = problems(store)
    assert sorted(found) == sorted([
        "notes.txt: stray file, not part of the store",
        "shards/extra.tar: stray file, not part of the store",
        ".work/: an unfinished generation's state; rerun `fgbg generate` or remove it",
    ])  # fmt: skip


def test_member_indexes_and_the_lock_file_belong_to_the_store(store):
    from fgbg.store.lock import store_lock

    with store_lock(store, "stats"):
        pass  # leaves STORE/.lock, as every writing verb does
    assert (store / ".lock").is_file() and len(list((store / "shards").glob("*.idx"))) == 6
    assert problems(store) == []


def test_a_damaged_or_missing_member_index_is_caught(store):
    idx = store / "shards" / "shard-000001.idx"
    data = bytearray(idx.read_bytes())
    data[24 + 8 * 5] ^= 0x01  # the size of the 3rd member of the 1st sample
    idx.write_bytes(bytes(data))
    assert problems(store) == [
        "shards/shard-000001.idx: sha256 differs from dataset.json (changed or truncated; 472 bytes)",
        f"shards/shard-000001.idx: 1 member offset(s) disagree with {SHARD}",
    ]
    idx.unlink()
    assert problems(store) == ["shards/shard-000001.idx: missing (shard-000001, 7 samples)"]
    (store / "shards" / "shard-000009.idx").write_bytes(bytes(data))
    assert "shards/shard-000009.idx: stray file, not part of the store" in problems(store)


def test_a_truncated_png_in_a_folder_store_is_one_line(folders, tmp_path, capsys):
    store = make(folders, tmp_path / "folder", format="folder")
    path = store / "mask" / "b000" / "b000_f001_0_01.png"
    path.write_bytes(path.read_bytes()[:30])
    assert problems(store) == [
        "mask/b000/: sha256 of its files differs from dataset.json (changed, missing or extra files)",
        "mask/b000/b000_f001_0_01.png: does not decode (not an image, or cut short: 30 bytes)",
    ]
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_folder_format_missing_member_and_changed_file(folders, tmp_path):
    store = make(folders, tmp_path / "folder", format="folder")
    first = sorted((store / "mask" / "b001").iterdir())[0]
    first.unlink()
    found = problems(store)
    assert f"mask/b001/{first.name}: missing member" in found
    assert any(line.startswith("mask/b001/: sha256") for line in found)


def test_zip_format_flipped_byte(folders, tmp_path):
    store = make(folders, tmp_path / "zip", format="zip")
    path = store / "depth" / "b002.zip"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert any(line.startswith("depth/b002.zip: sha256 differs") for line in problems(store))


def test_counts_that_disagree_with_the_plan_are_caught(store):
    meta = json.loads((store / "dataset.json").read_text())
    meta["counts"]["samples"] += 1
    (store / "dataset.json").write_text(json.dumps(meta))
    assert any("counts.samples is 37, the plan has 36" in line for line in problems(store))


def test_cli_verify_exit_codes_and_one_line_per_problem(store, capsys):
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 0
    assert "every check passed" in capsys.readouterr().out
    (store / SHARD).unlink()
    (store / "stray.tmp").write_text("")
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("fgbg verify: error: ") for line in lines)
    assert "2 problem(s) found" in lines[-1]
