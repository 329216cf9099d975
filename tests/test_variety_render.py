"""The variety options as the renderer applies them (issue 27): the plan's blend-mode dimension,
turned sprites, truncation, distractors, category balance, and the identity of stores made before them.

End-to-end guarantees through the command line (workers, kill -9, bad input) are in test_variety_store.py.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fgbg.codecs import decode_png
from fgbg.config import GenerateConfig
from fgbg.make.assets import demo_assets
from fgbg.make.generate import generate
from fgbg.make.render import Renderer
from fgbg.make.sprites import SpriteCache
from fgbg.make.variety import rotate_rgba
from fgbg.store.layout import DATASET_JSON
from fgbg.store.plan import Plan
from fgbg.store.read import StoreReader

from .conftest import SMALL, make_store


def store_json(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the plan


def test_blend_each_plans_every_layout_once_per_mode_and_keys_find_their_place():
    config = GenerateConfig(placements=2, blend=("hard", "gaussian", "poisson"), blend_each=True)
    plan = Plan.from_config(2, 3, config)
    assert len(plan) == 2 * 3 * 2 * 2 * 3
    refs = [plan[i] for i in range(len(plan))]
    assert [r.mode for r in refs[:3]] == ["hard", "gaussian", "poisson"]
    assert refs[1].key == "b000_f000_0_00_gaussian" and refs[1].layout_key == "b000_f000_0_00"
    assert len({r.key for r in refs}) == len(plan) and len({r.layout_key for r in refs}) == len(plan) // 3
    assert all(plan.index(r.key) == i for i, r in enumerate(refs))
    assert plan.index("b000_f000_0_00") is None and plan.index("b000_f000_0_00_motion") is None


def test_a_plan_without_blend_each_keeps_its_keys():
    plan = Plan.from_config(2, 3, GenerateConfig(placements=2, blend=("hard", "gaussian")))
    assert plan[5].key == "b000_f001_0_01" and plan[5].mode == "" and plan.index("b000_f001_0_01") == 5
    assert plan.index("b000_f001_0_01_hard") is None


# ---------------------------------------------------------------- turned sprites


def test_a_turned_sprite_is_the_turned_resize_and_its_mask_is_that_alpha_at_128():
    _, fg_dir = demo_assets()
    from fgbg.make.assets import prepare_fg, read_image

    fg = prepare_fg(read_image(fg_dir / "giraffe.png")[0], 60)
    cache = SpriteCache([fg])
    upright = cache.get(0, 0, 45, 60)
    turned = cache.get(0, 0, 45, 60, 27.5)
    expected = rotate_rgba(upright.rgba(), 27.5)[0]
    assert np.array_equal(turned.rgba(), expected)
    assert np.array_equal(turned.mask, np.where(expected[..., 3] >= 128, 255, 0))
    assert turned.mask.shape != upright.mask.shape and cache.get(0, 0, 45, 60, 27.5) is turned


def test_a_turned_object_stands_on_the_lowest_row_of_its_mask(folders, tmp_path):
    store = make_store(folders, tmp_path / "s", rotate_min=20.0, rotate_max=40.0)
    r = Renderer.from_store(store)
    for sample in store_json(store):
        o = sample["objects"][0]
        sprite = r.sprites.get(o["fg"], o["flip"], *r.fg[o["fg"]].shape[1::-1], o["rotate"])
        rows = np.flatnonzero(sprite.shown.any(axis=1))
        fx, fy = o["foot"]
        x, y = sample["x"], sample["y"]
        assert 20 <= o["rotate"] <= 40 and fy - y == rows[-1] and sprite.shown[fy - y, fx - x]


# ---------------------------------------------------------------- truncation


def test_truncated_objects_leave_at_most_their_share_and_stay_whole_without_truncate(folders, tmp_path):
    truncated = store_json(make_store(folders, tmp_path / "t", truncate=0.3, objects_max=3, placements=6))
    in_frame = [o["in_frame"] for s in truncated for o in s["objects"]]
    assert min(in_frame) >= 0.7 and sum(f < 1 for f in in_frame) >= 5  # some do leave, none by more than 30%
    for s in truncated:
        for o in s["objects"]:
            x, y, w, h = o["full_box"]
            assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64  # the in-frame part
    whole = store_json(make_store(folders, tmp_path / "w", rotate_min=-30.0, rotate_max=30.0, objects_max=3, placements=6))
    assert all(o["in_frame"] == 1.0 for s in whole for o in s["objects"])


def test_a_foot_outside_the_frame_reads_depth_at_the_nearest_pixel_inside(folders, tmp_path):
    store = make_store(folders, tmp_path / "t", truncate=0.5, placements=12)
    reader = StoreReader(store)
    outside = [s for s in store_json(store) if not (0 <= s["foot"][0] < 64 and 0 <= s["foot"][1] < 64)]
    assert outside, "no foot left the frame: draw more placements"
    for s in outside:
        depth = decode_png(reader.read(s["key"], ["depth.png"])["depth.png"])
        fx, fy = min(max(s["foot"][0], 0), 63), min(max(s["foot"][1], 0), 63)
        assert s["depth"] == round(int(depth[fy, fx]) / 255, 6) or not s["objects"][0]["area"]


# ---------------------------------------------------------------- distractors


@pytest.fixture
def distractor_folders(tmp_path):
    bg_src, fg_src = demo_assets()
    folders = {}
    for name, stems in {"fg": ["cow", "dog", "penguin"], "dd": ["cactus", "potted_plant", "snowman"]}.items():
        (tmp_path / name).mkdir()
        for stem in stems:
            shutil.copy(fg_src / f"{stem}.png", tmp_path / name)
    (tmp_path / "bg").mkdir()
    for path in sorted(bg_src.glob("*.jpg"))[:2]:
        shutil.copy(path, tmp_path / "bg")
    return tmp_path / "bg", tmp_path / "fg", tmp_path / "dd"


def test_distractors_are_pasted_and_depth_ordered_but_in_no_mask(distractor_folders, tmp_path):
    bg, fg, dd = distractor_folders
    config = GenerateConfig(**{**SMALL, "placements": 4, "distractors": True, "distractors_min": 2, "distractors_max": 2, "objects_max": 2})
    generate(bg, fg, tmp_path / "s", config, workers=0, progress=False, distractors=dd)
    reader = StoreReader(tmp_path / "s")
    samples = store_json(tmp_path / "s")
    hidden_by_one = 0
    for s in samples:
        assert {d["file"] for d in s["distractors"]} <= {"cactus.png", "potted_plant.png", "snowman.png"}
        members = {k: decode_png(v) for k, v in reader.read(s["key"], ["mask.png", "instances.png"]).items()}
        assert np.array_equal(members["mask.png"] > 0, members["instances.png"] > 0)  # objects only
        assert set(np.unique(members["instances.png"])) <= set(range(len(s["objects"]) + 1))
        hidden_by_one += sum(o["visible"] < 1 for o in s["objects"])
        for d in s["distractors"]:
            x, y, w, h = d["box"]
            assert 0 < d["visible"] <= 1 and w > 0 and 0 <= x and x + w <= 64
    assert sum(len(s["distractors"]) for s in samples) >= len(samples)  # most samples hold both
    assert hidden_by_one > 0  # distractors hide objects too
    meta = json.loads((tmp_path / "s" / DATASET_JSON).read_text())
    assert [d["file"] for d in meta["sources"]["distractor"]] == ["cactus.png", "potted_plant.png", "snowman.png"]


def test_the_distractor_pixels_are_the_only_change_from_the_same_store_without_them(distractor_folders, tmp_path):
    """Depth: a distractor's visible pixels take its foot's depth, like an object's; masks ignore it."""
    bg, fg, dd = distractor_folders
    config = GenerateConfig(**{**SMALL, "placements": 2, "distractors": True, "distractors_min": 1, "distractors_max": 1})
    generate(bg, fg, tmp_path / "s", config, workers=0, progress=False, distractors=dd)
    reader = StoreReader(tmp_path / "s")
    changed = 0
    for s in store_json(tmp_path / "s"):
        members = {k: decode_png(v) for k, v in reader.read(s["key"], ["mask.png", "depth.png"]).items()}
        d = s["distractors"][0] if s["distractors"] else None
        if d and d["visible"] > 0.5:
            x, y, w, h = d["box"]
            region = members["depth.png"][y : y + h, x : x + w][members["mask.png"][y : y + h, x : x + w] == 0]
            changed += int(np.any(region == round(d["depth"] * 255)))
    assert changed > 0


# ---------------------------------------------------------------- category balance


def test_balance_categories_pastes_every_category_about_equally(tmp_path):
    bg_src, fg_src = demo_assets()
    (tmp_path / "fg" / "few").mkdir(parents=True)
    (tmp_path / "fg" / "many").mkdir()
    shutil.copy(fg_src / "cow.png", tmp_path / "fg" / "few")
    for stem in ["dog", "penguin", "horse", "llama", "rooster", "giraffe", "elephant"]:
        shutil.copy(fg_src / f"{stem}.png", tmp_path / "fg" / "many")
    (tmp_path / "bg").mkdir()
    shutil.copy(next(iter(sorted(bg_src.glob("*.jpg")))), tmp_path / "bg")
    counts = {}
    for balance in ("foregrounds", "categories"):
        config = GenerateConfig(**{**SMALL, "placements": 6, "objects_min": 3, "objects_max": 3, "min_visible": 0.0, "balance": balance})
        generate(tmp_path / "bg", tmp_path / "fg", tmp_path / balance, config, workers=0, progress=False)
        extras = [o["fg_file"].split("/")[0] for s in store_json(tmp_path / balance) for o in s["objects"][1:]]
        counts[balance] = Counter(extras)
    few, many = (counts["categories"][c] for c in ("few", "many"))
    assert abs(few - many) <= 0.25 * (few + many)  # about equal
    assert counts["foregrounds"]["few"] < 0.25 * counts["foregrounds"]["many"]  # by fg: 1 in 8


# ---------------------------------------------------------------- stores made before variety


def test_a_store_recorded_before_the_variety_fields_is_still_the_same_run(folders, tmp_path, small_config):
    store = make_store(folders, tmp_path / "s")
    path = store / DATASET_JSON
    meta = json.loads(path.read_text())
    new_fields = ["height", "rotate_min", "rotate_max", "truncate", "distractors", "distractors_min", "distractors_max",
                  "blend", "blend_each", "light", "harmonize", "balance"]  # fmt: skip
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in new_fields}
    path.write_text(json.dumps(meta))
    summary = generate(*folders, store, small_config, workers=0, progress=False)
    assert summary.already_complete
