"""Issue 27's guarantees for whole stores, through the CLI: `fgbg generate` with the variety flags.

The same bytes on 1 or 2 workers, on Ray, and after a kill -9 and a rerun; every draw recorded
in the json and the manifest, within its flag's range; masks, instance ids and boxes exact for
turned, truncated and blended objects (and a quarter turn rebuilt from the store's prepared fg
with numpy alone); --blend-each siblings differing only in colour; defaults that keep the bytes;
bad values refused in one line, with nothing written. The operations themselves are checked
against outside references in tests/test_variety.py.

Stores are tiny: 3 real bgs x 3 real fgs x 2 flips x 1 placement = 18 samples of 48 px.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from fgbg.cli import main
from fgbg.config import VARIETY
from fgbg.demo import demo_assets
from fgbg.inspect.verify import verify
from fgbg.make.variety import HUE_DEGREES_PER_JITTER
from fgbg.masks import box, rle_decode
from fgbg.store.layout import CRASH_AT_ENV, CRASH_STEPS_ENV
from fgbg.store.lock import LOCK_FILE
from fgbg.store.read import decode_member, iter_samples

from .conftest import copy_images, demo_folders

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "48", "--fg-size", "24", "--placements", "1", "--shard-size", "5", "--no-progress"]
SAMPLES = 3 * 3 * 2 * 1  # bgs x fgs x flips x placements
SHARDS = 4  # of 5 samples at most
VARIED = ["--variety", "--objects", "1:3"]
DISTRACTORS = ["potted_plant.png", "rooster.png", "snowman.png"]  # demo cut-outs that are not among the fgs
TOLERANCE = 1e-4  # draws are rounded to 4 decimals (2 for angles) in the json


class Inputs(NamedTuple):
    bg: Path  # 3 real photos
    fg: Path  # 3 real RGBA cut-outs
    distractors: Path  # 3 other cut-outs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    bg, fg = demo_folders(root)
    distractors = root / "distractors"
    for name in DISTRACTORS:
        copy_images(demo_assets()[1], distractors, 1, name)
    assert not {p.name for p in fg.iterdir()} & set(DISTRACTORS)
    return Inputs(bg, fg, distractors)


def args(inputs: Inputs, out: Path, *flags: str) -> list[str]:
    return ["generate", "--bg", str(inputs.bg), "--fg", str(inputs.fg), "--out", str(out), *TINY, *flags]


def varied_flags(inputs: Inputs) -> list[str]:
    """--variety with several objects and distractors: every option that draws."""
    return [*VARIED, "--distractors", str(inputs.distractors)]


def generate(inputs, out: Path, *flags: str) -> Path:
    """`fgbg generate` in this process (in-process workers unless ``--workers`` says otherwise); the store."""
    workers = [] if "--workers" in flags else ["--workers", "0"]
    assert main(args(inputs, out, *flags, *workers)) == 0
    return out


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m fgbg ARGV` in a session of its own (a kill of its process group is a kill of it
    and its workers alone), with this tree's fgbg first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "fgbg", *argv], env=env, capture_output=True, text=True,
                          start_new_session=True, timeout=300)  # fmt: skip


def snapshot(store: Path) -> dict[str, bytes | None]:
    """Every file and folder of a store: files' bytes, folders None; the lock file by name only (it records its holder)."""
    return {
        p.relative_to(store).as_posix(): None if p.is_dir() or p.name == LOCK_FILE else p.read_bytes()
        for p in sorted(store.rglob("*"))
    }


def shard_files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((store / "shards").iterdir())}


def samples(store: Path) -> list[tuple[str, dict]]:
    """(key, {member suffix: decoded member}) of every sample, in plan order."""
    return [(key, {suffix: decode_member(suffix, data) for suffix, data in sample.items()}) for key, sample in iter_samples(store)]


def manifest(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]


def objects(store: Path) -> list[dict]:
    """Every object's json entry, over the whole store."""
    return [o for _, s in samples(store) for o in s["json"]["objects"]]


@pytest.fixture(scope="module")
def varied(inputs, tmp_path_factory) -> tuple[Path, str]:
    """A `--variety --objects 1:3 --distractors DIR` store made by one worker process (a run of its own), and the
    durable-write steps it went through (FGBG_CRASH_STEPS: "p" the main process, "w" a worker)."""
    root = tmp_path_factory.mktemp("varied")
    store, steps = root / "store", root / "steps"
    done = run(args(inputs, store, *varied_flags(inputs), "--workers", "1"), {CRASH_STEPS_ENV: str(steps)})
    assert done.returncode == 0, done.stderr
    return store, steps.read_text()


# ---------------------------------------------------------------- the same bytes however it is run


def test_a_variety_store_has_the_same_shard_bytes_on_one_or_two_workers(varied, inputs, tmp_path):
    one, _ = varied
    two = generate(inputs, tmp_path / "two", *varied_flags(inputs), "--workers", "2")
    assert len([n for n in shard_files(one) if n.endswith(".tar")]) == SHARDS  # enough shards for two workers to share
    assert shard_files(two) == shard_files(one)
    assert snapshot(two) == snapshot(one)


def test_a_variety_store_killed_9_mid_run_then_rerun_is_the_uninterrupted_store(varied, inputs, tmp_path):
    reference, marks = varied
    worker_steps = [n for n, mark in enumerate(marks, start=1) if mark == "w"]
    middle = worker_steps[len(worker_steps) // 2]  # a worker's write, with shards behind and ahead of it
    out = tmp_path / "killed"
    killed = run(args(inputs, out, *varied_flags(inputs), "--workers", "1"), {CRASH_AT_ENV: str(middle), CRASH_STEPS_ENV: str(tmp_path / "steps")})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(out) != snapshot(reference)  # stopped short of the end
    rerun = run(args(inputs, out, *varied_flags(inputs), "--workers", "2"), {})
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(out) == snapshot(reference)
    assert verify(out, workers=0).ok


def test_a_variety_store_on_ray_is_byte_identical_to_the_local_engine(varied, inputs, tmp_path):
    pytest.importorskip("ray")
    from .test_ray import in_namespace, namespace_refusal

    if namespace_refusal() is not None:
        pytest.skip(namespace_refusal())
    reference, _ = varied
    ray_store = tmp_path / "ray"
    result = in_namespace({"cluster": None, "steps": [{"cli": args(inputs, ray_store, *varied_flags(inputs), "--engine", "ray")}]}, tmp_path)
    assert result["steps"][0]["rc"] == 0
    assert snapshot(ray_store) == snapshot(reference)


# ---------------------------------------------------------------- every draw recorded


def within(value: float, low: float, high: float) -> bool:
    return low - TOLERANCE <= value <= high + TOLERANCE


@pytest.fixture(scope="module")
def overridden(inputs, tmp_path_factory) -> Path:
    """--variety with three of its flags given otherwise: a one-sided angle range, other blend modes, less light."""
    out = tmp_path_factory.mktemp("overridden") / "store"
    return generate(inputs, out, *VARIED, "--rotate", "10:20", "--blend", "gaussian,poisson", "--light", "0.1")


RANGES = {  # store -> (rotate range, blend modes, light J, harmonize P, truncate F)
    "varied": ((VARIETY["rotate_min"], VARIETY["rotate_max"]), VARIETY["blend"], VARIETY["light"], VARIETY["harmonize"], VARIETY["truncate"]),
    "overridden": ((10.0, 20.0), ("gaussian", "poisson"), 0.1, VARIETY["harmonize"], VARIETY["truncate"]),
}


def check_draws(o: dict, rotate: tuple[float, float], modes: tuple[str, ...], light: float, harmonize: float) -> None:
    assert within(o["rotate"], *rotate), o
    assert o["blend"] in modes, o
    params = {"hard": set(), "poisson": set(), "gaussian": {"sigma"}, "motion": {"length", "angle"}}[o["blend"]]
    assert set(o["blend_params"]) == params, o
    assert set(o["light"]) == {"brightness", "contrast", "saturation", "hue"}, o
    assert all(within(o["light"][k], 1 - light, 1 + light) for k in ("brightness", "contrast", "saturation")), o
    assert within(o["light"]["hue"], -HUE_DEGREES_PER_JITTER * light, HUE_DEGREES_PER_JITTER * light), o
    assert within(o["harmonize"], 0.0, harmonize), o


@pytest.mark.parametrize("name", list(RANGES))
def test_every_objects_draws_are_recorded_in_its_json_and_the_manifest_within_the_flags_ranges(name, varied, overridden):
    store = {"varied": varied[0], "overridden": overridden}[name]
    rotate, modes, light, harmonize, truncate = RANGES[name]
    found = samples(store)
    assert len(found) == SAMPLES
    for (key, sample), line in zip(found, manifest(store)):
        annotation = sample["json"]
        assert line["key"] == key and 1 <= len(annotation["objects"]) <= 3
        for o, listed in zip(annotation["objects"], line["objects"], strict=True):
            check_draws(o, rotate, modes, light, harmonize)
            assert listed == {k: v for k, v in o.items() if k not in ("mask", "full_mask")}  # the manifest says the same
        for d in annotation.get("distractors", []):  # pasted as objects are, so drawn and recorded as they are
            check_draws(d, rotate, modes, light, harmonize)
            assert d["file"] in DISTRACTORS and 0 <= d["visible"] <= 1, d
        assert line.get("distractors") == annotation.get("distractors")
    every = objects(store)
    assert len({o["rotate"] for o in every}) > len(every) // 2  # drawn, not fixed
    assert {o["blend"] for o in every} == set(modes)  # 18+ objects: every mode comes up
    config = json.loads((store / "dataset.json").read_text())["config"]
    assert (config["rotate_min"], config["rotate_max"], tuple(config["blend"])) == (*rotate, modes)
    assert (config["light"], config["harmonize"], config["truncate"]) == (light, harmonize, truncate)


def test_a_distractor_store_records_its_distractors_and_a_store_without_records_none(varied, overridden):
    counts = [len(s["json"]["distractors"]) for _, s in samples(varied[0])]
    assert max(counts) <= 3 and sum(counts) > SAMPLES  # --distractor-count 1:3 (a distractor without room is left out)
    assert all("distractors" not in s["json"] for _, s in samples(overridden))
    assert json.loads((varied[0] / "dataset.json").read_text())["config"]["distractors"] is True


# ---------------------------------------------------------------- masks exact for turned, truncated, blended objects


def check_masks(sample: dict, truncate: float) -> list[float]:
    """The sample's mask is the union of its objects' ids; each object's RLEs and boxes agree with
    the id map; returns the objects' in_frame."""
    ids, mask = sample["instances.png"], sample["mask.png"]
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask > 0, ids > 0)
    listed = sample["json"]["objects"]
    assert set(np.unique(ids)) - {0} == {o["id"] for o in listed if o["area"] > 0}
    for o in listed:
        seen, full = rle_decode(o["mask"]).astype(bool), rle_decode(o["full_mask"]).astype(bool)
        np.testing.assert_array_equal(seen, ids == o["id"])
        assert int(seen.sum()) == o["area"] and int(full.sum()) == o["full_area"]
        assert (full | seen).sum() == full.sum()  # what is seen is part of the whole (in-frame) mask
        assert box(seen) == o["box"] and box(full) == o["full_box"]  # tight boxes, inside the frame
        assert within(o["in_frame"], 1 - truncate, 1.0), o
    return [o["in_frame"] for o in listed]


def test_masks_are_the_union_of_instance_ids_and_each_objects_rles_and_boxes_hold_its_pixels(varied):
    in_frame = [f for _, sample in samples(varied[0]) for f in check_masks(sample, VARIETY["truncate"])]
    assert min(in_frame) < 1.0  # some objects do leave the frame


def test_a_wide_variety_store_keeps_its_masks_exact_and_its_truncation_inside_the_frame(inputs, tmp_path):
    store = generate(inputs, tmp_path / "wide", *VARIED, "--size", "64x40", "--fg-size", "24")
    in_frame = []
    for _, sample in samples(store):
        assert sample["instances.png"].shape == sample["mask.png"].shape == sample["fg_bg.jpg"].shape[:2] == (40, 64)
        in_frame += check_masks(sample, VARIETY["truncate"])
    assert min(in_frame) < 1.0


def test_coco_and_yolo_exports_of_a_truncated_store_hold_its_objects_alone_inside_the_image(varied, tmp_path):
    store, _ = varied
    seen = {key: [o for o in s["json"]["objects"] if o["area"] > 0] for key, s in samples(store)}
    for form in ("coco", "yolo"):
        assert main(["export", form, str(store), "--out", str(tmp_path / form), "--workers", "0", "--no-progress"]) == 0
    annotations, images = [], {}
    for path in sorted((tmp_path / "coco" / "annotations").glob("instances_*.json")):
        coco = json.loads(path.read_text())
        annotations += coco["annotations"]
        images.update({i["id"]: i for i in coco["images"]})
    assert len(annotations) == sum(map(len, seen.values()))  # a distractor is no annotation
    for a in annotations:
        image = images[a["image_id"]]
        for x, y, w, h in (a["bbox"], a["amodal_bbox"]):
            assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"], a
        assert a["in_frame_fraction"] >= 1 - VARIETY["truncate"] - TOLERANCE
    rows = {p.stem: p.read_text().splitlines() for p in (tmp_path / "yolo" / "labels").rglob("*.txt")}
    assert {key: len(r) for key, r in rows.items()} == {key: len(objects) for key, objects in seen.items()}
    coordinates = np.array([float(v) for r in rows.values() for line in r for v in line.split()[1:]])
    assert coordinates.min() >= 0 and coordinates.max() <= 1


def test_without_truncate_every_object_is_wholly_in_the_frame(overridden, inputs, tmp_path):
    turned = generate(inputs, tmp_path / "turned", "--rotate", "45", "--blend", "hard,gaussian", "--objects", "1:3", "--light", "0.3")
    in_frame = [f for _, sample in samples(turned) for f in check_masks(sample, 0.0)]
    assert in_frame and set(in_frame) == {1.0}


def test_a_quarter_turned_objects_whole_mask_is_its_prepared_fgs_alpha_turned_by_numpy(inputs, tmp_path):
    """At scale 1 an object is its prepared fg (STORE/assets/fg) unresized, and a quarter turn moves
    pixels without resampling: its whole mask is np.rot90 of the (mirrored) alpha >= 128, exactly."""
    store = generate(inputs, tmp_path / "quarter", "--rotate", "90:90", "--objects", "1:3", "--blend", "hard,motion")
    checked = 0
    for _, sample in samples(store):
        for o in sample["json"]["objects"]:
            rgba = np.asarray(Image.open(store / "assets" / "fg" / f"f{o['fg']:03d}.png").convert("RGBA"))
            alpha = rgba[:, ::-1, 3] if o["flip"] else rgba[..., 3]
            turned = np.rot90(alpha >= 128)
            x, y, w, h = box(turned)
            fx, fy, fw, fh = o["full_box"]
            whole = rle_decode(o["full_mask"]).astype(bool)
            assert o["rotate"] == 90.0 and o["in_frame"] == 1.0 and (fw, fh) == (w, h)
            np.testing.assert_array_equal(whole[fy : fy + fh, fx : fx + fw], turned[y : y + h, x : x + w])
            assert whole.sum() == turned.sum()
            checked += 1
    assert checked >= SAMPLES


def test_distractors_are_in_no_mask_they_only_hide_the_objects_of_the_same_store_without_them(inputs, tmp_path):
    """Distractors are drawn after the objects from the same generator: with them the objects are placed
    as without them, and the masks and ids can only lose pixels (where a distractor is in front), never gain any."""
    flags = ["--objects", "1:3", "--rotate", "20", "--light", "0.2"]
    plain = samples(generate(inputs, tmp_path / "plain", *flags))
    distracted = samples(generate(inputs, tmp_path / "distracted", *flags, "--distractors", str(inputs.distractors), "--distractor-count", "2:3"))
    hidden_by_distractors = 0
    for (key, without), (same_key, with_them) in zip(plain, distracted, strict=True):
        assert key == same_key and with_them["json"]["distractors"]
        before, after = without["instances.png"], with_them["instances.png"]
        assert ((after == before) | (after == 0)).all(), key  # no pixel gained, none changed hands
        np.testing.assert_array_equal(with_them["mask.png"] > 0, after > 0)
        place = lambda s: [(o["fg"], o["flip"], o["rotate"], o["full_box"], o["full_mask"]) for o in s["json"]["objects"]]  # noqa: E731
        assert place(with_them) == place(without), key
        hidden_by_distractors += int(((before > 0) & (after == 0)).sum())
        for d in with_them["json"]["distractors"]:  # its pixels are in the composite: it changed the colours in its box
            x, y, w, h = d["box"]
            if d["visible"] > 0.5:
                assert not np.array_equal(with_them["fg_bg.jpg"][y : y + h, x : x + w], without["fg_bg.jpg"][y : y + h, x : x + w]), key
    assert hidden_by_distractors > 0  # distractors do stand in front of objects somewhere


# ---------------------------------------------------------------- --blend-each


def test_blend_each_renders_every_mode_on_the_same_layout(inputs, tmp_path):
    modes = ("hard", "gaussian", "motion")
    store = generate(inputs, tmp_path / "each", "--blend-each", "--blend", ",".join(modes), "--objects", "1:3", "--rotate", "20", "--light", "0.2")
    found = samples(store)
    assert len(found) == 3 * SAMPLES
    siblings: dict[str, dict[str, dict]] = defaultdict(dict)
    for key, sample in found:
        stem, mode = key.rsplit("_", 1)
        siblings[stem][mode] = sample
    assert len(siblings) == SAMPLES and all(set(group) == set(modes) for group in siblings.values())
    for stem, group in siblings.items():
        hard = group["hard"]
        for mode in modes[1:]:
            other = group[mode]
            for member in ("mask.png", "instances.png", "depth.png"):
                np.testing.assert_array_equal(other[member], hard[member], err_msg=f"{stem}_{mode} {member}")
            assert not np.array_equal(other["fg_bg.jpg"], hard["fg_bg.jpg"]), f"{stem}_{mode}: blending changed nothing"
            # the json differs in the key and in each object's blend alone
            same = lambda a: {**a, "key": None, "objects": [{**o, "blend": None, "blend_params": None} for o in a["objects"]]}  # noqa: E731
            assert same(other["json"]) == same(hard["json"])
            assert {o["blend"] for o in other["json"]["objects"]} == {mode}


# ---------------------------------------------------------------- defaults keep the bytes


@pytest.mark.parametrize("extra", [[], ["--objects", "1:3"]], ids=["one object", "several objects"])
def test_variety_flags_at_their_defaults_give_the_stores_bytes_without_them(extra, inputs, tmp_path):
    plain = generate(inputs, tmp_path / "plain", *extra)
    spelled = generate(inputs, tmp_path / "spelled", *extra, "--rotate", "0", "--truncate", "0", "--blend", "hard", "--light", "0", "--harmonize", "0")
    assert snapshot(spelled) == snapshot(plain)
    assert "rotate" not in manifest(plain)[0] and all("blend" not in o for o in manifest(plain)[0].get("objects", []))


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--rotate", "abc"], "--rotate"),
        (["--rotate", "10:ten"], "--rotate"),
        (["--rotate", "30:10"], "--rotate"),
        (["--truncate", "1"], "--truncate"),
        (["--truncate", "-0.1"], "--truncate"),
        (["--blend", "hard,sparkle"], "--blend"),
        (["--blend", ""], "--blend"),
        (["--blend", ","], "--blend"),
        (["--blend-each", "--blend", "gaussian"], "--blend-each"),
        (["--blend-each"], "--blend-each"),  # the default --blend is hard alone
        (["--light", "1.5"], "--light"),
        (["--light", "-0.1"], "--light"),
        (["--harmonize", "1.01"], "--harmonize"),
        (["--harmonize", "-1"], "--harmonize"),
        (["--size", "0x480"], "--size"),
        (["--size", "640x"], "--size"),
        (["--size", "100000x480"], "--size"),
        (["--balance", "colours"], "--balance"),
        (["--distractors", "MISSING"], "--distractors"),
        (["--distractors", "EMPTY"], "--distractors"),
        (["--distractors", "FG"], "--distractors"),
        (["--distractor-count", "3:1"], "--distractor-count"),
    ],
)
def test_a_bad_variety_value_is_one_line_naming_the_flag_exit_2_and_nothing_written(flags, named, inputs, tmp_path, capsys):
    out = tmp_path / "store"
    (tmp_path / "EMPTY").mkdir()
    folders = {"MISSING": str(tmp_path / "missing"), "EMPTY": str(tmp_path / "EMPTY"), "FG": str(inputs.fg)}
    flags = [folders.get(flag, flag) for flag in flags]
    try:
        code = main(args(inputs, out, *flags, "--workers", "0"))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and named in err and "Traceback" not in err, err
    assert not out.exists()
