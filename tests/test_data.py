"""The torch dataset over a store: formats, workers, splits, compact batches, paired augmentation on the device, normalisation."""

import io
import json

import numpy as np
import pytest
import torch

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.errors import CorruptStore
from fgbg.learn.data import (
    AugmentConfig,
    EpochSampler,
    StoreDataset,
    augment_batch_,
    augment_tensors,
    compact_sample_bytes,
    draw_augment,
    fit_workers_to_shm,
    load_stats,
    make_loader,
    prepare_batch,
    read_entries,
    resized,
    split_indices,
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
        np.testing.assert_array_equal(s["fg_bg"].permute(1, 2, 0).numpy(), codecs.decode_jpeg(members["fg_bg.jpg"]))
        np.testing.assert_array_equal(s["bg"].permute(1, 2, 0).numpy(), bgs[entry.bg])
        np.testing.assert_array_equal(s["mask"][0].numpy() * 255, codecs.decode_png(members["mask.png"]))
        np.testing.assert_array_equal(s["depth"][0].numpy(), codecs.decode_png(members["depth.png"]))
        assert set(s["mask"].unique().tolist()) <= {0, 1}


def test_resized_on_load(store):
    s = StoreDataset(store, size=24)[3]
    assert s["bg"].shape == (3, 24, 24) and s["mask"].shape == (1, 24, 24)
    assert set(s["mask"].unique().tolist()) <= {0, 1} and s["depth"].dtype == torch.uint8


@pytest.mark.parametrize("shape, dtype", [((40, 56, 3), np.uint8), ((40, 56), np.uint8), ((40, 56), np.uint16)])
def test_resizing_in_the_stored_type_is_within_a_grey_level_of_float(shape, dtype):
    """The fast uint8 resize (uint16: float, rounded back) stays within one level of torch's float antialiased bilinear."""
    top = np.iinfo(dtype).max
    img = np.random.default_rng(0).integers(0, top + 1, shape, dtype=dtype)
    ref = torch.from_numpy(img.astype(np.float32) / top)
    ref = ref[None] if ref.ndim == 2 else ref.permute(2, 0, 1)
    ref = torch.nn.functional.interpolate(ref[None], size=(16, 16), mode="bilinear", antialias=True)[0]
    out = resized(img, 16)
    assert out.shape == ref.shape and out.dtype == torch.from_numpy(img).dtype
    torch.testing.assert_close(out.float() / top, ref, rtol=0, atol=1 / top)


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
    batch = {"bg": bg[None].clone(), "fg_bg": fg_bg[None].clone(), "mask": mask[None].clone(), "depth": depth[None].clone()}
    out = {k: v[0] for k, v in augment_batch_(batch, torch.utils.data.default_collate([augment_tensors(params)])).items()}
    outside = out["mask"][0] == 0
    torch.testing.assert_close(out["bg"][:, outside], out["fg_bg"][:, outside], rtol=0, atol=0)  # same jitter
    assert torch.equal(out["mask"], mask.flip(-1)) and torch.equal(out["depth"], depth.flip(-1))
    assert not torch.allclose(out["bg"], bg.flip(-1))  # the colours did change
    assert 0 <= out["fg_bg"].min() and out["fg_bg"].max() <= 1


# ---------------------------------------------------------------- compact batches, augmented on the device

# The loader's path before batches became compact, kept here as the oracle: per sample, float at
# load time, the augmentation drawn from a generator seeded by (seed, epoch, index), applied to the
# sample, then normalised.


def draw_as_before(config: AugmentConfig, seed: int, epoch: int, index: int) -> dict:
    u = torch.rand(6, generator=torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 100_000_007 + index))
    return {
        "flip": bool(config.flip and u[0] < 0.5),
        "gain": 1 + config.gain * (2 * u[1:4] - 1),
        "contrast": float(1 + config.contrast * (2 * u[4] - 1)),
        "offset": float(config.brightness * (2 * u[5] - 1)),
    }


def float_as_before(img: np.ndarray, size: int, top: int) -> torch.Tensor:
    """The old to_tensor: uint8 resized by torch's uint8 kernel, uint16 in float, then / top."""
    x = torch.from_numpy(img.copy())
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    if x.dtype != torch.uint8:
        x = x.float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
    return x.float() / top


def sample_as_before(store, index: int, size: int, params: dict | None, stats=None) -> dict:
    """One sample as the loader made it before: float, augmented, normalised when ``stats``."""
    reader = StoreDataset(store).reader
    members, top = reader.read(index), (1 << reader.config.depth_bits) - 1
    bg_file = asset_paths(store, "bg", reader.plan.n_bg)[reader.plan[index].bg]
    s = {
        "bg": float_as_before(codecs.decode_jpeg(bg_file.read_bytes()), size, 255),
        "fg_bg": float_as_before(codecs.decode_jpeg(members["fg_bg.jpg"]), size, 255),
        "mask": (float_as_before(codecs.decode_png(members["mask.png"]), size, 255) > 0.5).float(),
        "depth": float_as_before(codecs.decode_png(members["depth.png"]), size, top),
    }
    if params is not None:
        for name in ("bg", "fg_bg"):
            s[name] = ((s[name] * params["gain"].view(3, 1, 1) - 0.5) * params["contrast"] + 0.5 + params["offset"]).clamp(0, 1)
        if params["flip"]:
            s = {k: v.flip(-1) for k, v in s.items()}
    if stats is not None:
        for name, channels in (("bg", slice(0, 3)), ("fg_bg", slice(3, 6))):
            m, sd = torch.tensor(stats.mean[channels]).view(3, 1, 1), torch.tensor(stats.std[channels]).view(3, 1, 1)
            s[name] = (s[name] - m) / sd
    return s


def loaded(ds: StoreDataset, epoch: int, workers: int = 0, rank: int = 0, world: int = 1) -> list[dict]:
    """Every batch (of 5) of this rank's share of ``epoch``."""
    sampler = EpochSampler(len(ds), True, 7, even=True, rank=rank, world=world)
    sampler.set_epoch(epoch)
    return list(torch.utils.data.DataLoader(ds, batch_size=5, sampler=sampler, num_workers=workers))


def test_each_samples_augmentation_is_drawn_as_before_whatever_the_workers_and_ranks(store):
    config = AugmentConfig()
    ds = StoreDataset(store, augment=config, seed=3)
    for workers, world in ((0, 1), (2, 1), (0, 2)):
        batches = [b for rank in range(world) for b in loaded(ds, 4, workers, rank, world)]
        seen = 0
        for b in batches:
            for i, index in enumerate(b["index"].tolist()):
                want = draw_as_before(config, 3, 4, index)
                assert b["augment"]["flip"][i].item() is want["flip"]
                assert torch.equal(b["augment"]["gain"][i], want["gain"])
                assert b["augment"]["contrast"][i].item() == want["contrast"] and b["augment"]["offset"][i].item() == want["offset"]
                seen += 1
        assert seen == len(ds) // world * world
    assert any(b["augment"]["flip"].any() for b in batches) and not all(b["augment"]["flip"].all() for b in batches)


@pytest.mark.parametrize("depth_bits, size", [(8, 32), (16, 24)])
def test_a_batch_prepared_on_the_device_is_the_per_sample_reference(folders, tmp_path, depth_bits, size):
    """Collated compact, made float, augmented and normalised in one batch step = the old per-sample path, within 1/255."""
    out = tmp_path / "store"
    generate(*folders, out, GenerateConfig(**TINY, depth_bits=depth_bits), workers=0, progress=False)
    kinds = {k: {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]} for k in ("bg", "fg_bg", "mask")}
    (out / "stats.json").write_text(json.dumps({"kinds": kinds}))
    stats, config = load_stats(out), AugmentConfig()
    for normalized in (False, True):
        ds = StoreDataset(out, list(range(0, 36, 2)), size, stats, config, seed=1, normalized=normalized)
        batch = loaded(ds, epoch=2)[1]
        got = ds.prepare(batch)
        assert {k: got[k].dtype for k in ("bg", "fg_bg", "mask", "depth")} == dict.fromkeys(("bg", "fg_bg", "mask", "depth"), torch.float32)
        assert "augment" not in got and torch.equal(got["index"], batch["index"])
        tolerance = 1 / 255 / (min(stats.std) if normalized else 1)
        flipped = 0
        for i, index in enumerate(batch["index"].tolist()):
            params = draw_as_before(config, 1, 2, index)
            flipped += params["flip"]
            want = sample_as_before(out, index, size, params, stats if normalized else None)
            for k in want:
                torch.testing.assert_close(got[k][i], want[k], rtol=0, atol=tolerance if k != "mask" else 0, msg=f"{k} of {index}")
        assert 0 < flipped < len(batch["index"])  # both branches of the flip were compared


def test_collated_batches_are_compact(folders, tmp_path, store):
    b = next(iter(make_loader(StoreDataset(store, augment=AugmentConfig()), batch=8, shuffle=True)))
    assert {k: b[k].dtype for k in ("bg", "fg_bg", "mask", "depth")} == dict.fromkeys(("bg", "fg_bg", "mask", "depth"), torch.uint8)
    pixels = 8 * 32 * 32
    images = sum(b[k].numel() * b[k].element_size() for k in ("bg", "fg_bg", "mask", "depth"))
    assert images == pixels * (3 + 3 + 1 + 1)  # one byte a value: a quarter of the float32 batches of before
    extra = sum(t.numel() * t.element_size() for t in (b["index"], *b["augment"].values()))
    assert extra == 8 * (8 + 1 + 3 * 4 + 4 + 4)  # index, flip, gain, contrast, offset
    deep = tmp_path / "deep"
    generate(*folders, deep, GenerateConfig(**TINY, depth_bits=16), workers=0, progress=False)
    b16 = next(iter(make_loader(StoreDataset(deep), batch=8, shuffle=False)))
    assert b16["depth"].dtype == torch.uint16 and b16["bg"].dtype == torch.uint8 and "augment" not in b16
    assert prepare_batch(b16)["depth"].max() <= 1 and prepare_batch(b16)["depth"].max() > 1 / 255  # scaled by 65535


@pytest.mark.parametrize("depth_bits", [8, 16])
def test_a_compact_sample_is_counted_as_its_batches_hold_it(folders, tmp_path, depth_bits):
    """What the shared-memory check counts per sample covers what a collated batch holds, within 1%."""
    store = tmp_path / f"s{depth_bits}"
    generate(*folders, store, GenerateConfig(**TINY, depth_bits=depth_bits), workers=0, progress=False)
    b = next(iter(make_loader(StoreDataset(store, augment=AugmentConfig()), batch=8, shuffle=True)))
    held = sum(t.numel() * t.element_size() for t in (b["bg"], b["fg_bg"], b["mask"], b["depth"], b["index"], *b["augment"].values()))
    counted = 8 * compact_sample_bytes(32, depth_bits // 8)
    assert held <= counted <= 1.01 * held


def test_loader_workers_and_batches_ahead_fit_the_free_shared_memory():
    ahead = 2 * 256 * compact_sample_bytes(224, 2)  # one batch of 256 at 224 px ahead, for training and for validation
    assert 0.22e9 < ahead < 0.24e9
    assert fit_workers_to_shm(15, 2, ahead, 16 * 2**30) == (15, 2)  # 7 GB in flight: fits in half of 16 GiB
    assert fit_workers_to_shm(15, 2, ahead, 8 * 2**30) == (15, 1)  # every worker, one batch ahead each
    assert fit_workers_to_shm(15, 2, ahead, 2 * 2**30) == (4, 1)  # 4 x 231 MB in 1 GiB
    assert fit_workers_to_shm(15, 2, ahead, 64 * 2**20) is None  # a container's 64 MB default: not one batch
    assert fit_workers_to_shm(2, 4, 100, 1_000) == (2, 2)  # the workers asked for, as many batches ahead as fit
    assert fit_workers_to_shm(15, 2, ahead, None) == (15, 2) and fit_workers_to_shm(0, 4, ahead, 0) == (0, 4)  # no /dev/shm; no workers
    for workers, prefetch, free in [(15, 2, 5 * 2**30), (8, 4, 3 * 2**30), (3, 2, 2**30)]:
        w, p = fit_workers_to_shm(workers, prefetch, ahead, free)
        assert w * p * ahead <= free / 2 and (w + 1) * ahead > free / 2 or w == workers  # the most workers that fit


def test_a_float_batch_is_left_as_it_is():
    batch = {"bg": torch.rand(2, 3, 4, 4), "fg_bg": torch.rand(2, 3, 4, 4), "mask": torch.ones(2, 1, 4, 4), "depth": torch.rand(2, 1, 4, 4)}
    assert prepare_batch(batch, load_stats("/nonexistent")) is batch


@pytest.mark.cuda
def test_a_batch_prepared_on_the_gpu_is_the_cpu_one(store):
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from fgbg.engine.devices import resolve_device

    device = resolve_device("cuda")
    ds = StoreDataset(store, augment=AugmentConfig(), seed=2)
    batch = loaded(ds, epoch=1)[0]
    cpu = ds.prepare(batch)
    gpu = ds.prepare(move_data_to_device(batch, device.torch))  # as Lightning copies it, augmentation parameters included
    for k in ("bg", "fg_bg", "mask", "depth"):
        assert gpu[k].is_cuda
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=0, atol=1 / 255 / min(ds.stats.std))


def test_stats_json_is_used_when_present(store):
    assert load_stats(store).source == "default"
    kinds = {k: {"mean": [0.2, 0.3, 0.4], "std": [0.1, 0.2, 0.3]} for k in ("bg", "fg_bg", "mask")}
    (store / "stats.json").write_text(json.dumps({"kinds": kinds}))
    stats = load_stats(store)
    assert stats.source == "stats.json" and stats.mean == [0.2, 0.3, 0.4] * 2
    plain, normed = StoreDataset(store, normalized=False), StoreDataset(store)
    plain, normed = (ds.prepare(torch.utils.data.default_collate([ds[0]])) for ds in (plain, normed))
    torch.testing.assert_close(normed["bg"][0, 1], (plain["bg"][0, 1] - 0.3) / 0.2)
    torch.testing.assert_close(normed["mask"], plain["mask"])  # targets are never normalised


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_share_each_epoch_once_in_the_single_process_order(world):
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


def test_normalisation_builds_its_per_channel_constants_once_per_device(store, monkeypatch):
    """A tensor made from a Python list at every batch is, on a GPU, a copy that waits for the work queued
    before it: the mean/std tensors are made once per (values, dtype, device) and kept."""
    from fgbg.learn import data
    from fgbg.learn.data import Stats, denormalize, prepare_batch

    ds = StoreDataset(store, augment=AugmentConfig(), seed=2)
    stats = Stats([0.4, 0.5, 0.6, 0.3, 0.45, 0.55], [0.2, 0.25, 0.3, 0.21, 0.22, 0.23], "test")
    batches = loaded(ds, epoch=0)[:2]
    first = prepare_batch(batches[0], stats)
    made, tensor = [], torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or tensor(*a, **k))
    second = prepare_batch(batches[1], stats)
    restored = denormalize(second["fg_bg"], stats.mean[3:], stats.std[3:])
    assert made == []  # nothing built from Python numbers for the second batch
    plain = prepare_batch(batches[1])
    mean, std = torch.tensor(stats.mean[3:]).view(3, 1, 1), torch.tensor(stats.std[3:]).view(3, 1, 1)
    torch.testing.assert_close(second["fg_bg"], (plain["fg_bg"] - mean) / std)  # the same numbers as before
    torch.testing.assert_close(restored, plain["fg_bg"])
    assert first["bg"].shape == second["bg"].shape
    assert data.channel_constants((0.5,), torch.float32, torch.device("cpu")) is data.channel_constants((0.5,), torch.float32, torch.device("cpu"))


def test_bg_perturbations_are_drawn_per_sample_and_epoch_whatever_the_workers_and_the_jpeg_is_pils(store):
    from PIL import Image

    from fgbg.learn.perturb import BgAugConfig

    ds = StoreDataset(store, None, 32, augment=AugmentConfig(), seed=3, bg_augment=BgAugConfig(p_jpeg=0.5))
    plain = StoreDataset(store, None, 32, augment=AugmentConfig(), seed=3)
    first, second = loaded(ds, 0), loaded(ds, 0, workers=2)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, second) for k in ("bg", "fg_bg", "mask", "index"))
    assert all(torch.equal(a["bg_aug"][k], b["bg_aug"][k]) for a, b in zip(first, second) for k in a["bg_aug"])
    later = loaded(ds, 1)
    assert any(not torch.equal(a["bg_aug"]["theta"], b["bg_aug"]["theta"]) for a, b in zip(first, later))
    # the paired augmentation is drawn as without the bg perturbation
    assert all(torch.equal(a["augment"][k], b["augment"][k]) for a, b in zip(first, loaded(plain, 0)) for k in a["augment"])
    samples = [ds[(p, 0)] for p in range(len(ds))]
    quality = [int(s["bg_aug"]["jpeg"]) for s in samples]
    assert 0 < sum(q > 0 for q in quality) < len(samples)
    for p, (sample, q) in enumerate(zip(samples, quality)):
        raw = plain.raw(p)["bg"]
        if not q:
            assert torch.equal(sample["bg"], raw)
            continue
        buffer = io.BytesIO()
        Image.fromarray(raw.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=q)
        assert np.array_equal(sample["bg"].permute(1, 2, 0).numpy(), np.asarray(Image.open(buffer).convert("RGB")))
