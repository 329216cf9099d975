"""End to end: folders of real images -> store, read back with outside readers."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.errors import UserError
from fgbg.inspect.verify import verify
from fgbg.make.generate import GenerateError, generate
from fgbg.store.layout import asset_paths
from fgbg.store import iter_samples, read_dataset_json
from fgbg.store.layout import CRASH_AT_ENV, CRASH_STEPS_ENV
from fgbg.store.lock import LOCK_FILE

from .conftest import SMALL


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.tar"))}


def kill_mid_run_then_uninterrupted(cmd: list[str], out: Path, whole: Path, after_shards: int) -> int:
    """Run ``cmd --out whole`` to the end; run ``cmd --out out`` and SIGKILL its process group
    once ``after_shards`` shards are committed. Returns how many were committed by then."""
    subprocess.run([*cmd, "--out", str(whole)], check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(out)], start_new_session=True)
    deadline = time.time() + 120
    while len(list((out / ".work").glob("shard-*.json"))) < after_shards and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list((out / ".work").glob("shard-*.json")))


def make(folders, out, workers=1, overwrite=False, **overrides):
    config = GenerateConfig(**{**SMALL, **overrides})
    return generate(*folders, out, config, workers=workers, overwrite=overwrite, progress=False)


def test_webdataset_reads_every_planned_sample(folders, tmp_path):
    summary = make(folders, tmp_path / "out")
    meta = read_dataset_json(tmp_path / "out")
    planned = 3 * 3 * 2 * SMALL["placements"]
    assert summary.samples == meta["counts"]["samples"] == planned
    urls = [str(tmp_path / "out" / f) for s in meta["shards"] for f in s["files"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == planned
    assert {k for k in samples[0] if not k.startswith("__")} == {"fg_bg.jpg", "mask.png", "depth.png", "json"}
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == planned and keys == sorted(keys)
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [m["key"] for m in manifest] == keys
    assert not (tmp_path / "out" / ".work").exists()


def test_every_sample_obeys_the_mask_and_depth_rules(folders, tmp_path):
    out = tmp_path / "out"
    make(folders, out, scale_min=0.6, scale_max=1.0)
    meta = read_dataset_json(out)
    bgs = [codecs.decode_jpeg(p.read_bytes()) for p in asset_paths(out, "bg", 3)]
    bg_depth = [codecs.decode_png(p.read_bytes()) for p in asset_paths(out, "bg_depth", 3)]
    for _, m in iter_samples(out):
        ann = json.loads(m["json"])
        fg_bg = codecs.decode_jpeg(m["fg_bg.jpg"])
        mask = codecs.decode_png(m["mask.png"])
        depth = codecs.decode_png(m["depth.png"])
        assert fg_bg.shape == (64, 64, 3) and mask.shape == depth.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255}
        x, y, w, h = ann["x"], ann["y"], ann["w"], ann["h"]
        assert (mask[:, :x] == 0).all() and (mask[:y] == 0).all()
        assert (mask[:, x + w :] == 0).all() and (mask[y + h :] == 0).all()
        assert (mask > 0).sum() == ann["mask_area"] > 0
        # depth: fg pixels take the foot value, the rest is the bg's map at 8 bits
        fx, fy = ann["foot"]
        expected_bg = np.rint(bg_depth[ann["bg"]] / 65535 * 255).astype(np.uint8)
        foot_value = expected_bg[fy, fx]
        assert np.all(depth[mask > 0] == foot_value)
        np.testing.assert_array_equal(depth[mask == 0], expected_bg[mask == 0])
        assert ann["depth"] == pytest.approx(foot_value / 255, abs=1e-6)
        # outside the box the composite is the bg (up to JPEG error)
        outside = np.ones((64, 64), bool)
        outside[y : y + h, x : x + w] = False
        assert np.abs(fg_bg[outside].astype(int) - bgs[ann["bg"]][outside]).mean() < 6
    assert meta["depth"]["source"] == "layered" and meta["depth"]["near"] == "bright"
    assert meta["depth"]["bg_maps"] == {"ground-plane prior": 3}


def test_one_worker_and_two_workers_give_identical_shards(folders, tmp_path):
    make(folders, tmp_path / "one", workers=1)
    make(folders, tmp_path / "two", workers=2)
    one, two = shard_hashes(tmp_path / "one"), shard_hashes(tmp_path / "two")
    assert len(one) > 1 and one == two
    assert (tmp_path / "one" / "manifest.jsonl").read_bytes() == (tmp_path / "two" / "manifest.jsonl").read_bytes()
    meta = read_dataset_json(tmp_path / "one")
    assert {f: h for s in meta["shards"] for f, h in s["files"].items()} == {
        f"shards/{k}": v for k, v in one.items()
    }


def test_sigkill_mid_run_then_rerun_gives_the_same_bytes(folders, tmp_path):
    bg, fg = folders
    args = ["--bg", str(bg), "--fg", str(fg), "--size", "160", "--fg-size", "80", "--placements", "60",
            "--shard-size", "40", "--workers", "2", "--quiet"]  # fmt: skip
    cmd = [sys.executable, "-m", "fgbg", "generate", *args]
    out = tmp_path / "killed"
    done_before = kill_mid_run_then_uninterrupted(cmd, out, tmp_path / "whole", after_shards=3)
    assert 3 <= done_before < 27, "the kill should land mid-run"
    assert not (out / "dataset.json").exists()
    rerun = subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True)
    assert "kept from an earlier run" in rerun.stdout
    assert shard_hashes(out) == shard_hashes(tmp_path / "whole")
    assert (out / "manifest.jsonl").read_bytes() == (tmp_path / "whole" / "manifest.jsonl").read_bytes()
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("fmt", ["folder", "zip"])
def test_folder_and_zip_hold_the_same_samples_as_wds(folders, tmp_path, fmt):
    make(folders, tmp_path / "wds")
    make(folders, tmp_path / fmt, format=fmt)
    a = dict(iter_samples(tmp_path / "wds"))
    b = dict(iter_samples(tmp_path / fmt))
    assert a.keys() == b.keys() and len(a) == 36
    assert all(a[k] == b[k] for k in a)
    meta = read_dataset_json(tmp_path / fmt)
    assert [s["count"] for s in meta["shards"]] == [12, 12, 12]  # one shard per bg
    kind_dirs = {p.name for p in (tmp_path / fmt).iterdir() if p.is_dir()}
    assert {"fg_bg", "mask", "depth", "annotation", "assets"} <= kind_dirs


def files(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) below ``folder``; the lock file's record of its
    last holder (pid, time) by name only."""
    return {
        p.relative_to(folder).as_posix(): None if p.is_dir() or p.name == LOCK_FILE else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def test_rerun_of_a_complete_store_does_nothing_and_other_config_is_refused(folders, tmp_path):
    out = tmp_path / "out"
    first = make(folders, out)
    before = files(out)
    again = make(folders, out)
    assert again.resumed_samples == again.samples and files(out) == before
    assert str(again) == f"{out}: already complete (36 samples in 6 shards, {first.bytes / 1e6:.1f} MB); nothing to do"
    lock_record = (out / LOCK_FILE).read_bytes()
    with pytest.raises(GenerateError, match="different config"):
        make(folders, out, seed=1)
    assert files(out) == before and (out / LOCK_FILE).read_bytes() == lock_record  # refused before locking
    make(folders, out, seed=1, overwrite=True)
    assert shard_hashes(out) != {k[len("shards/"):]: v for k, v in before.items() if k.endswith(".tar")}
    assert verify(out, workers=0).ok


def test_foreign_non_empty_out_is_refused_untouched(folders, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(GenerateError, match="not an fgbg store"):
        make(folders, out)
    assert files(out) == {"thesis.docx": b"precious"}  # not even a lock file


def test_out_naming_a_file_or_bad_input_is_one_line_and_writes_nothing(folders, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(UserError, match="is a file, not a folder") as e:
        make(folders, path)
    assert "\n" not in str(e.value) and path.read_text() == "mine"
    bg, fg = folders
    with pytest.raises(UserError):
        make((bg, tmp_path / "no-such-folder"), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_killed_after_dataset_json_before_work_is_removed_the_rerun_completes_the_store(folders, tmp_path):
    bg, fg = folders
    cmd = [sys.executable, "-m", "fgbg", "generate", "--bg", str(bg), "--fg", str(fg), "--size", "32",
           "--fg-size", "16", "--placements", "1", "--workers", "0", "--no-progress"]  # fmt: skip
    steps = tmp_path / "steps"
    counting = {**os.environ, CRASH_STEPS_ENV: str(steps)}
    subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=counting, check=True, capture_output=True)
    # the last step removes .work/; the one before it makes dataset.json durable
    env = {**os.environ, CRASH_STEPS_ENV: str(tmp_path / "steps2"), CRASH_AT_ENV: str(steps.stat().st_size - 1)}
    out = tmp_path / "out"
    killed = subprocess.run([*cmd, "--out", str(out)], env=env, start_new_session=True, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "dataset.json").is_file() and (out / ".work").is_dir()
    rerun = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, check=True)
    assert "already complete" in rerun.stdout and "samples/s" not in rerun.stdout
    assert not (out / ".work").exists() and verify(out, workers=0).ok


def test_sidecar_depth_and_16_bit_depth(folders, tmp_path):
    from PIL import Image

    bg, fg = folders
    first = sorted(bg.glob("*.jpg"))[0]
    w, h = Image.open(first).size
    ramp = np.tile(np.linspace(0, 65535, w).astype(np.uint16)[None, :], (h, 1))  # near on the right
    Image.fromarray(ramp).save(bg / (first.stem + ".depth.png"))
    out = tmp_path / "out"
    make(folders, out, depth_bits=16)
    meta = read_dataset_json(out)
    assert meta["depth"]["bg_maps"] == {"ground-plane prior": 2, "sidecar": 1}
    assert meta["sources"]["bg"][0]["depth"] == "sidecar"
    key, m = next(iter_samples(out))
    depth = codecs.decode_png(m["depth.png"])
    assert depth.dtype == np.uint16
    mask = codecs.decode_png(m["mask.png"])
    row = depth[0][mask[0] == 0]
    # the sidecar's ramp, centre-cropped like its bg: increasing to the right
    assert np.all(np.diff(row.astype(int)) >= 0) and int(row[-1]) - int(row[0]) > 0.3 * 65535


def test_perspective_store_scales_fg_with_foot_depth(folders, tmp_path):
    out = tmp_path / "out"
    make(folders, out, perspective=True, scale_min=0.3, scale_max=1.0, placements=10)
    anns = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    scales = np.array([a["scale"] for a in anns])
    depths = np.array([a["depth"] for a in anns])
    assert np.allclose(scales, 0.3 + 0.7 * depths, atol=0.01)
    assert read_dataset_json(out)["depth"]["perspective"] is True


def test_a_hand_broken_dataset_json_is_one_line_and_overwrite_replaces_the_store(folders, tmp_path):
    out = tmp_path / "out"
    make(folders, out)
    (out / "dataset.json").write_text('{"config": ')  # cut short by a hand edit
    with pytest.raises(UserError, match="dataset.json: not readable JSON") as e:
        make(folders, out)
    assert "\n" not in str(e.value)
    make(folders, out, overwrite=True)
    assert verify(out, workers=0).ok
