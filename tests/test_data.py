"""The torch dataset over a store: formats, workers, splits, paired augmentation, normalisation."""

import json

import numpy as np
import pytest
import torch

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.errors import CorruptStore
from fgbg.learn.data import (
    AugmentConfig,
    StoreDataset,
    apply_augment,
    draw_augment,
    load_stats,
    make_loader,
    read_entries,
    split_indices,
    to_tensor,
)
from fgbg.make.generate import generate
from fgbg.store.layout import asset_paths
from fgbg.store import iter_samples

TINY = dict(size=32, fg_size=16, placements=2, shard_size=5)


@pytest.fixture
def store(folders, tmp_path):
    out = tmp_path / "store"
    generate(*folders, out, GenerateConfig(**TINY), workers=0, progress=False)
    return out


def test_every_format_yields_the_same_tensors(folders, tmp_path):
    datasets = {}
    for fmt in ("wds", "folder", "zip"):
        out = tmp_path / fmt
        generate(*folders, out, GenerateConfig(**TINY, format=fmt), workers=0, progress=False)
        datasets[fmt] = StoreDataset(out)
    n = len(datasets["wds"])
    assert n == len(datasets["folder"]) == len(datasets["zip"]) == 3 * 3 * 2 * 2
    for i in (0, 7, n - 1):
        ref = datasets["wds"][i]
        for fmt in ("folder", "zip"):
            got = datasets[fmt][i]
            for k in ref:
                torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)


def test_samples_are_the_stored_members_and_their_background(store):
    ds = StoreDataset(store, normalized=False)
    bgs = [codecs.decode_jpeg(p.read_bytes()) for p in asset_paths(store, "bg", 3)]
    for i, (key, members) in enumerate(iter_samples(store)):
        s = ds[i]
        entry = ds.reader.entries[i]
        assert entry.key == key and s["index"].item() == i
        assert s["bg"].shape == s["fg_bg"].shape == (3, 32, 32) and s["mask"].shape == s["depth"].shape == (1, 32, 32)
        np.testing.assert_array_equal((s["fg_bg"] * 255).round().byte().permute(1, 2, 0).numpy(), codecs.decode_jpeg(members["fg_bg.jpg"]))
        np.testing.assert_array_equal((s["bg"] * 255).round().byte().permute(1, 2, 0).numpy(), bgs[entry.bg])
        np.testing.assert_array_equal(s["mask"][0].numpy() * 255, codecs.decode_png(members["mask.png"]))
        np.testing.assert_allclose(s["depth"][0].numpy(), codecs.decode_png(members["depth.png"]) / 255, atol=1e-6)
        assert set(s["mask"].unique().tolist()) <= {0.0, 1.0}


def test_resized_on_load(store):
    s = StoreDataset(store, size=24)[3]
    assert s["bg"].shape == (3, 24, 24) and s["mask"].shape == (1, 24, 24)
    assert set(s["mask"].unique().tolist()) <= {0.0, 1.0}
    assert 0 <= s["depth"].min() and s["depth"].max() <= 1


@pytest.mark.parametrize("shape, dtype", [((40, 56, 3), np.uint8), ((40, 56), np.uint8), ((40, 56), np.uint16)])
def test_resizing_in_uint8_is_within_a_grey_level_of_float(shape, dtype):
    """The fast uint8 resize stays within one grey level of torch's float antialiased bilinear."""
    top = np.iinfo(dtype).max
    img = np.random.default_rng(0).integers(0, top + 1, shape, dtype=dtype)
    ref = torch.from_numpy(img.astype(np.float32) / top)
    ref = ref[None] if ref.ndim == 2 else ref.permute(2, 0, 1)
    ref = torch.nn.functional.interpolate(ref[None], size=(16, 16), mode="bilinear", antialias=True)[0]
    out = to_tensor(img, 16, top)
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1 / top if dtype == np.uint8 else 1e-6)


def test_two_workers_yield_the_same_samples_as_zero(store):
    ds = StoreDataset(store, augment=AugmentConfig(), seed=3)
    assert ds.reader._files == {}  # nothing opened in __init__: nothing shared across fork

    def epochs(workers):
        loader = make_loader(ds, batch=4, shuffle=True, workers=workers, seed=5)
        out = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            out.append(list(loader))
        return out

    serial, parallel = epochs(0), epochs(2)
    for a_epoch, b_epoch in zip(serial, parallel):
        assert len(a_epoch) == len(b_epoch) == 9
        for a, b in zip(a_epoch, b_epoch):
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # epochs differ (order and augmentation), a rerun does not
    assert not torch.equal(serial[0][0]["index"], serial[1][0]["index"])
    assert torch.equal(epochs(0)[1][2]["fg_bg"], serial[1][2]["fg_bg"])


def test_reader_reopens_its_files_in_a_new_process(store, monkeypatch):
    reader = StoreDataset(store).reader
    first = reader.read(0)
    assert len(reader._files) == 1
    monkeypatch.setattr("os.getpid", lambda: -1)  # as a forked worker sees it
    assert reader.read(0) == first
    assert reader._pid == -1 and len(reader._files) == 1


def test_entries_come_from_the_plan_not_the_manifest(store):
    manifest = [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]
    (store / "manifest.jsonl").unlink()  # training needs only dataset.json and the shards
    entries = read_entries(store)
    assert [(e.key, e.bg, e.fg) for e in entries] == [(m["key"], m["bg"], m["fg"]) for m in manifest]
    assert StoreDataset(store)[len(manifest) - 1]["index"].item() == len(manifest) - 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_member_stops_loading_with_one_line_naming_it(folders, tmp_path, workers):
    out = tmp_path / "folder"
    generate(*folders, out, GenerateConfig(**TINY, format="folder"), workers=0, progress=False)
    path = out / "mask" / "b001" / "b001_f000_1_01.png"
    path.write_bytes(path.read_bytes()[:30])  # a truncated PNG
    loader = make_loader(StoreDataset(out), batch=4, shuffle=False, workers=workers)
    with pytest.raises(CorruptStore) as caught:
        list(loader)
    assert str(caught.value) == f"{path}: does not decode (not a PNG, or cut short (30 bytes)); run `fgbg verify {out}` to list every damaged file"


@pytest.mark.parametrize("by", ["bg", "fg"])
def test_split_holds_out_whole_backgrounds_or_foregrounds(store, by):
    entries = read_entries(store)
    split = split_indices(entries, by, 0.34, seed=1)
    held = set(split.held_out)
    assert len(held) == 1
    assert {getattr(entries[i], by) for i in split.val} == held
    assert not held & {getattr(entries[i], by) for i in split.train}
    assert sorted(split.train + split.val) == list(range(len(entries)))
    record = split.record()
    assert record["by"] == by and record["n_val"] == len(split.val) and json.dumps(record)
    assert split_indices(entries, by, 0.34, seed=1) == split  # deterministic


def test_random_split_and_bad_choices(store):
    entries = read_entries(store)
    split = split_indices(entries, "random", 0.25, seed=0)
    assert len(split.val) == 9 and not set(split.val) & set(split.train)
    with pytest.raises(ValueError, match="--val"):
        split_indices(entries, "colour")
    with pytest.raises(ValueError, match="random"):
        split_indices([e for e in entries if e.bg == 0], "bg")


def test_augmentation_keeps_the_pair_consistent():
    g = torch.Generator().manual_seed(0)
    bg = torch.rand(3, 8, 8, generator=g)
    fg_bg = bg.clone()
    fg_bg[:, 2:5, 1:3] = 0.9  # the fg
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:5, 1:3] = 1
    depth = torch.linspace(0, 1, 8).view(1, 8, 1).expand(1, 8, 8).clone()
    params = draw_augment(AugmentConfig(), torch.Generator().manual_seed(1))
    params["flip"] = True
    out = apply_augment({"bg": bg, "fg_bg": fg_bg, "mask": mask, "depth": depth}, params)
    outside = out["mask"][0] == 0
    torch.testing.assert_close(out["bg"][:, outside], out["fg_bg"][:, outside], rtol=0, atol=0)  # same jitter
    assert torch.equal(out["mask"], mask.flip(-1)) and torch.equal(out["depth"], depth.flip(-1))
    assert not torch.allclose(out["bg"], bg.flip(-1))  # the colours did change
    assert 0 <= out["fg_bg"].min() and out["fg_bg"].max() <= 1


def test_stats_json_is_used_when_present(store):
    assert load_stats(store).source == "default"
    kinds = {k: {"mean": [0.2, 0.3, 0.4], "std": [0.1, 0.2, 0.3]} for k in ("bg", "fg_bg", "mask")}
    (store / "stats.json").write_text(json.dumps({"kinds": kinds}))
    stats = load_stats(store)
    assert stats.source == "stats.json" and stats.mean == [0.2, 0.3, 0.4] * 2
    plain, normed = StoreDataset(store, normalized=False)[0], StoreDataset(store)[0]
    torch.testing.assert_close(normed["bg"][1], (plain["bg"][1] - 0.3) / 0.2)
    torch.testing.assert_close(normed["mask"], plain["mask"])  # targets are never normalised


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_share_each_epoch_once_in_the_single_process_order(world):
    from fgbg.learn.data import EpochSampler

    n, batch = 26, 4
    single = EpochSampler(n, seed=3)
    single.set_epoch(5)
    order = [p for p, _ in single]
    ranks = [EpochSampler(n, seed=3, even=True, rank=r, world=world) for r in range(world)]
    for s in ranks:
        s.set_epoch(5)
    taken = [list(s) for s in ranks]
    assert {e for t in taken for _, e in t} == {5} and len({len(t) for t in taken}) == 1  # lockstep: equal counts
    for k in range(len(taken[0]) // batch):  # the k-th batches of all ranks: one contiguous run of the order
        step = sorted(p for t in taken for p, _ in t[k * batch : (k + 1) * batch])
        assert step == sorted(order[k * batch * world : (k + 1) * batch * world])
    for s in ranks:  # a resume 8 samples into the epoch: the rest, over the ranks, then whole epochs again
        s.skip_once(8)
    rest = sorted(p for s in ranks for p, _ in s)
    assert rest == sorted(order[8 : 8 + (n - 8) // world * world])
    assert sorted(p for s in ranks for p, _ in s) == sorted(order[: n // world * world])
    val = [EpochSampler(n, shuffle=False, rank=r, world=world) for r in range(world)]
    assert sorted(p for s in val for p, _ in s) == list(range(n)) and sum(len(s) for s in val) == n  # nothing padded


def test_validation_subset_is_fixed_seeded_and_in_store_order():
    from fgbg.learn.data import validation_subset

    indices = list(range(100, 200))
    chosen = validation_subset(indices, 10, seed=1)
    assert chosen == validation_subset(indices, 10, seed=1) != validation_subset(indices, 10, seed=2)
    assert len(set(chosen)) == 10 and chosen == sorted(chosen) and set(chosen) <= set(indices)
    assert validation_subset(indices, 0, 1) == indices == validation_subset(indices, 500, 1)
