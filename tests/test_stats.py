"""Exact statistics: every number equals a float64 computation over every pixel."""

import json
import random

import numpy as np
import pytest

from fgbg import codecs
from fgbg.inspect import stats
from fgbg.cli import main
from fgbg.store.layout import asset_paths
from fgbg.inspect.stats import KINDS, KindStats, channel_summary, collect, compute_stats, histogram, merge, write_stats
from fgbg.store import StoreReader, iter_samples, read_dataset_json

from .conftest import make_store

SCHEMA = {"count": int, "channels": int, "height": int, "width": int, "format": str, "bytes": int,
          "mean": list, "std": list, "min": list, "max": list}  # fmt: skip


make = make_store


@pytest.fixture
def store(folders, tmp_path):
    return make(folders, tmp_path / "store")


def pixels_by_kind(store):
    """Every pixel of every image, float64 on [0, 1], as (N, C) per kind; and bytes per kind."""
    meta = read_dataset_json(store)
    values, nbytes = {k: [] for k in KINDS}, dict.fromkeys(KINDS, 0)
    for key, m in iter_samples(store):
        for kind, suffix, top in (("fg_bg", "fg_bg.jpg", 255), ("mask", "mask.png", 255), ("depth", "depth.png", None)):
            data = m[suffix]
            img = codecs.decode_jpeg(data) if suffix.endswith("jpg") else codecs.decode_png(data)
            top = top or (255 if img.dtype == np.uint8 else 65535)
            values[kind].append(img.reshape(img.shape[0] * img.shape[1], -1).astype(np.float64) / top)
            nbytes[kind] += len(data)
    for path in asset_paths(store, "bg", meta["counts"]["bg"]):
        values["bg"].append(codecs.decode_jpeg(path.read_bytes()).reshape(-1, 3) / 255.0)
        nbytes["bg"] += path.stat().st_size
    rgb, alpha = [], []
    for path in asset_paths(store, "fg", meta["counts"]["fg"]):
        fg = codecs.decode_png(path.read_bytes()).reshape(-1, 4) / 255.0
        rgb.append(fg[fg[:, 3] > 0, :3])
        alpha.append(fg[:, 3])
        nbytes["fg"] += path.stat().st_size
    for path in asset_paths(store, "fg_mask", meta["counts"]["fg"]):
        values["fg_mask"].append(codecs.decode_png(path.read_bytes()).reshape(-1, 1) / 255.0)
        nbytes["fg_mask"] += path.stat().st_size
    out = {k: np.concatenate(v) for k, v in values.items() if v}
    out["fg"] = (np.concatenate(rgb), np.concatenate(alpha)[:, None])
    return out, nbytes


def test_stats_equal_a_float64_computation_over_every_pixel(store):
    result = compute_stats(store, workers=0, cache=False)
    expected, nbytes = pixels_by_kind(store)
    assert list(result["kinds"]) == list(KINDS)
    for kind, entry in result["kinds"].items():
        if kind == "fg":
            rgb, alpha = expected["fg"]
            mean = np.concatenate([rgb.mean(0), alpha.mean(0)])
            std = np.concatenate([rgb.std(0), alpha.std(0)])
            lo = np.concatenate([rgb.min(0), alpha.min(0)])
            hi = np.concatenate([rgb.max(0), alpha.max(0)])
        else:
            v = expected[kind]
            mean, std, lo, hi = v.mean(0), v.std(0), v.min(0), v.max(0)
        np.testing.assert_allclose(entry["mean"], mean, rtol=0, atol=1e-9, err_msg=kind)
        np.testing.assert_allclose(entry["std"], std, rtol=0, atol=1e-9, err_msg=kind)
        np.testing.assert_allclose(entry["min"], lo, rtol=0, atol=1e-12, err_msg=kind)
        np.testing.assert_allclose(entry["max"], hi, rtol=0, atol=1e-12, err_msg=kind)
        assert entry["bytes"] == nbytes[kind]
    counts = read_dataset_json(store)["counts"]
    assert result["kinds"]["fg_bg"]["count"] == result["kinds"]["mask"]["count"] == counts["samples"] == 36
    assert result["kinds"]["bg"]["count"] == counts["bg"] and result["kinds"]["fg"]["count"] == counts["fg"]


def test_binary_mask_std_is_sqrt_p_times_1_minus_p(store):
    result = compute_stats(store, workers=0, cache=False)
    expected, _ = pixels_by_kind(store)
    for kind in ("mask", "fg_mask"):
        entry = result["kinds"][kind]
        p = entry["fg_fraction"]
        assert p == pytest.approx(np.count_nonzero(expected[kind]) / expected[kind].size, abs=1e-15)
        assert 0 < p < 1
        assert entry["mean"][0] == pytest.approx(p, abs=1e-12)
        assert entry["std"][0] == pytest.approx((p * (1 - p)) ** 0.5, abs=1e-12)


def test_stats_merged_from_shards_equal_stats_of_the_whole(store):
    whole = collect(store, workers=0, cache=False)
    meta = read_dataset_json(store)
    parts = [stats.shard_stats((str(store), s["index"], stats.SAMPLE_KINDS))[1] for s in meta["shards"]]
    assert len(parts) == 6
    random.Random(0).shuffle(parts)
    left, right = merge(parts[:2]), merge(parts[2:])
    merged = merge([left, right])
    for kind in stats.SAMPLE_KINDS:
        np.testing.assert_array_equal(merged[kind].hist, whole[kind].hist)
        assert merged[kind].summary() == whole[kind].summary()
    # and the histograms are those of all pixels at once
    all_masks = np.stack([codecs.decode_png(m["mask.png"]) for _, m in iter_samples(store)])
    np.testing.assert_array_equal(whole["mask"].hist[0], np.bincount(all_masks.ravel(), minlength=256))


def test_two_workers_give_the_same_stats_as_one(store):
    assert compute_stats(store, workers=2, cache=False) == compute_stats(store, workers=0, cache=False)


def test_16_bit_depth(folders, tmp_path):
    store = make(folders, tmp_path / "deep", depth_bits=16)
    result = compute_stats(store, workers=0, cache=False)
    depth = np.stack([codecs.decode_png(m["depth.png"]) for _, m in iter_samples(store)])
    assert depth.dtype == np.uint16
    values = depth.astype(np.float64) / 65535
    entry = result["kinds"]["depth"]
    assert entry["bits"] == 16 and entry["format"] == "png" and entry["channels"] == 1
    assert entry["mean"][0] == pytest.approx(values.mean(), abs=1e-9)
    assert entry["std"][0] == pytest.approx(values.std(), abs=1e-9)
    assert entry["max"][0] == pytest.approx(values.max(), abs=1e-12)
    # more distinct values than 8 bits can hold: the 65536 bins are really used
    assert len(np.unique(depth)) > 0 and collect(store, ["depth"], workers=0, cache=False)["depth"].hist.shape == (1, 65536)


def test_rerun_reads_only_changed_or_new_shards(store, monkeypatch):
    first = write_stats(store, workers=0)
    read = []
    real = stats.shard_stats
    monkeypatch.setattr(stats, "shard_stats", lambda task: read.append(task[1]) or real(task))
    assert write_stats(store, workers=0) == first and read == []
    # a shard that is new since the last run (no cache entry), and one whose sha256 changed
    (store / stats.CACHE_DIR / "shard-000002.npz").unlink()
    meta = json.loads((store / "dataset.json").read_text())
    rel = next(iter(meta["shards"][4]["files"]))
    meta["shards"][4]["files"][rel] = "0" * 64
    (store / "dataset.json").write_text(json.dumps(meta))
    assert write_stats(store, workers=0)["kinds"] == first["kinds"]
    assert sorted(read) == [2, 4]


def test_stats_json_schema(store):
    result = write_stats(store, workers=0)
    on_disk = json.loads((store / "stats.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert isinstance(on_disk["total_bytes"], int) and on_disk["total_bytes"] > read_dataset_json(store)["total_bytes"]
    for kind, entry in on_disk["kinds"].items():
        for name, typ in SCHEMA.items():
            assert isinstance(entry[name], typ), (kind, name)
        assert len(entry["mean"]) == len(entry["std"]) == len(entry["min"]) == len(entry["max"]) == entry["channels"]
    assert on_disk["kinds"]["fg_bg"]["format"] == "jpg" and on_disk["kinds"]["mask"]["format"] == "png"
    assert (on_disk["kinds"]["fg_bg"]["height"], on_disk["kinds"]["fg_bg"]["width"]) == (64, 64)
    assert on_disk["kinds"]["fg"]["channels"] == 4


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_fast_histogram_equals_bincount(channels):
    rng = np.random.default_rng(channels)
    img = rng.integers(0, 256, (17, 23, channels), dtype=np.uint8)
    fast = histogram(img if channels > 1 else img[..., 0])
    slow = np.stack([np.bincount(img[..., c].ravel(), minlength=256) for c in range(channels)])
    np.testing.assert_array_equal(fast, slow)
    where = rng.random((17, 23)) > 0.5
    masked = histogram(img, where=where)
    np.testing.assert_array_equal(masked[0], np.bincount(img[..., 0][where], minlength=256))


def test_summary_of_a_hand_made_histogram():
    s = KindStats("mask")
    s.add(histogram(np.array([[0, 255, 255, 255]], np.uint8)), (1, 4), 10)
    assert s.summary()["fg_fraction"] == 0.75
    assert channel_summary(s.hist)["std"][0] == pytest.approx((0.75 * 0.25) ** 0.5, abs=1e-15)
    wide = s + KindStats("mask", 16, np.bincount([65535], minlength=65536)[None], 1, 5, (1, 1), (1, 1))
    assert wide.bits == 16 and wide.count == 2 and wide.summary()["fg_fraction"] == 0.8


def test_cli_stats_prints_the_table_and_snippet(store, capsys):
    assert main(["stats", str(store), "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        assert f"\n{kind} " in out
    assert "Normalize(mean=[" in out and "stats.json" in out
    assert (store / "stats.json").exists()


def test_a_cut_shard_is_one_line_naming_the_member(store, capsys):
    path = store / "shards" / "shard-000003.tar"
    path.write_bytes(path.read_bytes()[:3000])
    assert main(["stats", str(store), "--workers", "0", "--quiet", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    first = StoreReader(store).key(read_dataset_json(store)["shards"][3]["start"])
    assert f"{path} member {first}." in err and "cut short" in err and f"fgbg verify {store}" in err


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_truncated_png_in_a_folder_store_is_one_line_naming_it(folders, tmp_path, capsys, workers):
    store = make(folders, tmp_path / "folder", format="folder")
    path = store / "mask" / "b000" / "b000_f001_0_01.png"
    path.write_bytes(path.read_bytes()[:30])
    assert main(["stats", str(store), "--workers", workers, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"fgbg stats: error: {path}: does not decode (not a PNG, or cut short (30 bytes));"
        f" run `fgbg verify {store}` to list every damaged file"
    )
    assert not (store / "stats.json").exists()


def test_stats_take_the_store_lock(store):
    from fgbg.errors import StoreBusy
    from fgbg.store.lock import store_lock

    with store_lock(store, "generate"):
        with pytest.raises(StoreBusy, match="fgbg generate"):
            write_stats(store, workers=0)
        assert not (store / "stats.json").exists() and not (store / stats.CACHE_DIR).exists()
    assert write_stats(store, workers=0)["samples"] == 36


def test_binary_shortcut_is_exact():
    mask = np.array([[0, 255], [255, 255]], np.uint8)
    np.testing.assert_array_equal(stats.binary_histogram(mask), histogram(mask))
    assert stats.binary_histogram(np.array([[0, 128]], np.uint8)) is None
