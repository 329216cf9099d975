"""verify, stats, show and the card on varied stores (issue 27): each recorded draw the config could not
make is one line naming its sample; instances per category show --balance at work; the variety picture."""

import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgbg.cli import main
from fgbg.config import VARIETY, GenerateConfig
from fgbg.inspect.card import write_card
from fgbg.inspect.drawing import PALETTE, draw_outlines
from fgbg.inspect.preview import preview
from fgbg.inspect.stats import write_stats
from fgbg.inspect.variety import OPTION_TITLES, check_variety, variety_options, variety_picks
from fgbg.inspect.verify import verify

from .conftest import SMALL, copy_images, demo_folders, make_store
from .test_inspect_several import change_json as rewrite_json

# Tiny: 2 bgs x 3 fgs x 2 flips x 1 placement = 12 samples in 2 shards of 7 and 5; 1 or 2 objects each.
TINY = dict(placements=1, objects_min=1, objects_max=2)
VARIED = dict(TINY, **VARIETY)  # rotation, truncation, blend modes, light, harmonisation


def json_members(store: Path) -> dict[str, tuple[str, dict]]:
    """Every sample's json with the shard that holds it, read with tarfile (not fgbg's reader)."""
    out = {}
    for tar_path in sorted((store / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for info in tar:
                if info.name.endswith(".json"):
                    out[info.name[: -len(".json")]] = (tar_path.relative_to(store).as_posix(), json.loads(tar.extractfile(info).read()))
    return out


def change_json(store: Path, key: str, edit) -> str:
    """Rewrite sample ``key``'s json through edit(ann) (in place); returns where verify names it."""
    shard, _ = json_members(store)[key]
    rewrite_json(store, edit, key, shard)
    return f"{shard}: {key}.json"


def problems(store: Path) -> list[str]:
    return verify(store, workers=0).problems


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A --variety store (12 samples), made once."""
    root = tmp_path_factory.mktemp("varied")
    return make_store(demo_folders(root, 2, 3), root / "store", **VARIED)


@pytest.fixture
def varied(pristine, tmp_path) -> Path:
    """A fresh copy of the --variety store, free to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "store"))


@pytest.fixture(scope="module")
def plain_pristine(tmp_path_factory) -> Path:
    """A store of 1 or 2 objects per composite with no variety option."""
    root = tmp_path_factory.mktemp("plain")
    return make_store(demo_folders(root, 2, 3), root / "store", **TINY)


@pytest.fixture
def plain(plain_pristine, tmp_path) -> Path:
    return Path(shutil.copytree(plain_pristine, tmp_path / "plain"))


def a_key_with(store: Path, wanted) -> tuple[str, int]:
    """The first sample (key) and object (1-based) whose json object satisfies ``wanted``."""
    for key, (_, ann) in json_members(store).items():
        for n, obj in enumerate(ann["objects"], 1):
            if wanted(obj):
                return key, n
    raise AssertionError("no such object in the store")


# ---------------------------------------------------------------- verify


def test_a_varied_store_verifies_clean_and_records_every_draw(pristine):
    report = verify(pristine, workers=0)
    assert report.ok, report.problems
    assert report.samples == 12
    objects = [o for _, ann in json_members(pristine).values() for o in ann["objects"]]
    assert all({"rotate", "blend", "blend_params", "light", "harmonize", "in_frame"} <= set(o) for o in objects)
    assert min(o["in_frame"] for o in objects) < 1  # truncation happened, so its check was not vacuous
    assert {o["blend"] for o in objects} == {"hard", "gaussian", "motion"}


def test_a_varied_store_of_one_object_per_composite_verifies_clean(tmp_path):
    store = make_store(demo_folders(tmp_path, 1, 2), tmp_path / "store", placements=1, rotate_min=-30.0, rotate_max=30.0)
    assert verify(store, workers=0).problems == []


def test_an_angle_outside_rotate_is_caught(varied, plain):
    key, n = a_key_with(varied, lambda o: True)
    where = change_json(varied, key, lambda ann: ann["objects"][n - 1].update(rotate=45.0))
    assert problems(varied) == [f"{where}: object {n}: rotate 45.0 is not within the store's --rotate -30:30 degrees"]
    key, _ = a_key_with(plain, lambda o: True)
    where = change_json(plain, key, lambda ann: ann["objects"][0].update(rotate=5.0))
    assert problems(plain) == [f"{where}: object 1: rotate 5.0, but the store was made without --rotate"]


def test_a_missing_draw_is_caught(varied):
    key, n = a_key_with(varied, lambda o: True)
    where = change_json(varied, key, lambda ann: [ann["objects"][n - 1].pop(name) for name in ("rotate", "light")])
    assert problems(varied) == [f"{where}: object {n}: no rotate, light recorded, but the store was made with --rotate --light"]


def test_an_object_more_out_of_the_frame_than_truncate_allows_is_caught(varied):
    key, n = a_key_with(varied, lambda o: True)
    where = change_json(varied, key, lambda ann: ann["objects"][n - 1].update(in_frame=0.5))
    assert problems(varied) == [f"{where}: object {n}: in_frame 0.5: more of it is out of the frame than --truncate 0.25 allows"]


def test_an_object_out_of_the_frame_without_truncate_is_caught(plain):
    key, _ = a_key_with(plain, lambda o: True)
    where = change_json(plain, key, lambda ann: ann["objects"][0].update(in_frame=0.9))
    assert problems(plain) == [f"{where}: object 1: in_frame 0.9: part of it is out of the frame, but the store was made without --truncate"]


def test_a_blend_mode_not_in_the_stores_list_is_caught(varied, plain):
    key, n = a_key_with(varied, lambda o: o["blend"] == "hard")
    where = change_json(varied, key, lambda ann: ann["objects"][n - 1].update(blend="poisson"))
    assert problems(varied) == [f"{where}: object {n}: blend 'poisson' is not one of the store's --blend hard,gaussian,motion"]
    key, _ = a_key_with(plain, lambda o: True)
    where = change_json(plain, key, lambda ann: ann["objects"][0].update(blend="gaussian", blend_params={"sigma": 1.0}))
    assert problems(plain) == [f"{where}: object 1: blend 'gaussian' is not one of the store's --blend hard"]


def test_blend_params_out_of_their_range_are_caught(varied):
    key, n = a_key_with(varied, lambda o: o["blend"] == "gaussian")
    where = change_json(varied, key, lambda ann: ann["objects"][n - 1]["blend_params"].update(sigma=9.0))
    assert problems(varied) == [f"{where}: object {n}: blend_params sigma 9.0 is not within 0.5..2 px"]


def test_a_blend_each_sibling_with_another_mode_is_caught(tmp_path):
    store = make_store(demo_folders(tmp_path, 1, 2), tmp_path / "store", **TINY, blend=("hard", "gaussian"), blend_each=True)
    keys = json_members(store)
    assert len(keys) == 8 and verify(store, workers=0).ok
    assert all(ann["objects"][0]["blend"] == key.rsplit("_", 1)[1] for key, (_, ann) in keys.items())
    anns = [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]
    siblings = [p.key for p in variety_picks(anns, GenerateConfig.from_dict(json.loads((store / "dataset.json").read_text())["config"]))["blend"]]
    assert len(siblings) == 2 and siblings[0][: -len("_hard")] == siblings[1][: -len("_gaussian")]  # one layout in each mode
    key = next(k for k in keys if k.endswith("_hard"))
    where = change_json(store, key, lambda ann: ann["objects"][0].update(blend="gaussian", blend_params={"sigma": 1.0}))
    assert problems(store) == [f"{where}: object 1: blend 'gaussian', but its key is the 'hard' sibling of --blend-each"]


def test_light_factors_outside_one_plus_or_minus_j_are_caught(varied):
    key, n = a_key_with(varied, lambda o: True)
    where = change_json(varied, key, lambda ann: ann["objects"][n - 1]["light"].update(brightness=1.5, hue=10.0))
    assert problems(varied) == [
        f"{where}: object {n}: light brightness 1.5 is not within the store's [1-J, 1+J] = [0.8, 1.2] (--light 0.2)",
        f"{where}: object {n}: light hue 10.0 is not within the store's +-3.6 degrees (--light 0.2)",
    ]


def test_a_harmonize_fraction_above_p_is_caught(varied):
    key, n = a_key_with(varied, lambda o: True)
    where = change_json(varied, key, lambda ann: ann["objects"][n - 1].update(harmonize=0.9))
    assert problems(varied) == [f"{where}: object {n}: harmonize 0.9 is not within the store's [0, 0.5] (--harmonize)"]


ROW = 13 + 8 + 4 + (11 + 5 + 64 * 3) + 4  # a row of the variety picture: title, pad, caption over the composite at 3x, pad
DISTRACTOR = {"file": "dog.png", "flip": 0, "scale": 1.0, "box": [40, 10, 20, 30], "depth": 0.5, "visible": 0.8,
              "blend": "hard", "blend_params": {}}  # fmt: skip


def test_distractor_records_are_checked_whole_and_in_the_frame(tmp_path):
    from fgbg.demo import demo_assets
    from fgbg.make.generate import generate

    folders = demo_folders(tmp_path, 1, 2)  # cactus and cow
    (tmp_path / "distractors").mkdir()
    shutil.copy(demo_assets()[1] / "dog.png", tmp_path / "distractors")
    store = tmp_path / "store"
    generate(*folders, store, GenerateConfig(**{**SMALL, **TINY, "distractors": True}), workers=0, progress=False,
             distractors=tmp_path / "distractors")  # fmt: skip
    assert verify(store, workers=0).ok
    members = json_members(store)
    key = next(k for k, (_, ann) in members.items() if ann["distractors"])
    assert {d["file"] for _, ann in members.values() for d in ann["distractors"]} == {"dog.png"}
    picture = preview(store, "variety", 2)
    assert picture.shape[0] == ROW and picture.shape[1] >= 4 + 2 * (64 * 3 + 4)  # one option: a row of 2 (or its title)
    out, lacking = dict(DISTRACTOR, box=[50, 10, 20, 30]), {k: v for k, v in DISTRACTOR.items() if k != "depth"}
    records = [out, lacking, dict(DISTRACTOR, visible=1.5), dict(DISTRACTOR, file="cat.png"), dict(DISTRACTOR, rotate=3.0)]
    where = change_json(store, key, lambda ann: ann.update(distractors=records))
    assert problems(store) == [
        f"{where}: 5 distractors, more than the store's --distractor-count 1:3",
        f"{where}: distractor 1: box [50, 10, 20, 30] reaches out of the 64x64 frame",
        f"{where}: distractor 2: lacks depth",
        f"{where}: distractor 3: visible 1.5 is not within [0, 1]",
        f"{where}: distractor 4: file 'cat.png' is not one of the store's distractor cut-outs",
        f"{where}: distractor 5: rotate 3.0, but the store was made without --rotate",
    ]


def test_distractors_in_a_store_made_without_them_are_caught(plain):
    key, _ = a_key_with(plain, lambda o: True)
    where = change_json(plain, key, lambda ann: ann.update(distractors=[DISTRACTOR]))
    assert problems(plain) == [f"{where}: has 1 distractor(s), but the store was made without --distractors"]


def test_check_variety_passes_what_the_config_could_draw_at_its_bounds():
    config = GenerateConfig(rotate_min=-30.0, rotate_max=30.0, truncate=0.25, blend=("hard", "motion"), light=0.2, harmonize=0.5)
    obj = {"rotate": -30.0, "in_frame": 0.75, "blend": "motion", "blend_params": {"length": 9, "angle": 180.0},
           "light": {"brightness": 0.8, "contrast": 1.2, "saturation": 1.0, "hue": -3.6}, "harmonize": 0.5}  # fmt: skip
    assert check_variety({"objects": [obj]}, config) == []
    assert check_variety({"objects": [dict(obj, rotate=-30.01)]}, config) == ["object 1: rotate -30.01 is not within the store's --rotate -30:30 degrees"]


# ---------------------------------------------------------------- stats: instances per category and --balance


def unequal_categories(root: Path) -> tuple[Path, Path]:
    """(8 bgs, fg/a with 1 cut-out and fg/b with 4): sub-folders of --fg are categories."""
    from fgbg.demo import demo_assets

    bg_src, fg_src = demo_assets()
    fg = root / "fg"
    for category, names in {"a": ["cow"], "b": ["dog", "horse", "llama", "penguin"]}.items():
        (fg / category).mkdir(parents=True)
        for name in names:
            shutil.copy(fg_src / f"{name}.png", fg / category / f"{name}.png")
    return copy_images(bg_src, root / "bg", 8, "*.jpg"), fg


@pytest.fixture(scope="module")
def balanced(tmp_path_factory) -> dict[str, dict]:
    """stats.json's ``objects`` of 80-sample stores of 3 objects each, by --balance (foregrounds, categories)."""
    root = tmp_path_factory.mktemp("balance")
    folders = unequal_categories(root)
    out = {}
    for balance in ("foregrounds", "categories"):
        store = make_store(folders, root / balance, placements=1, objects_min=3, objects_max=3, balance=balance)
        anns = [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]
        out[balance] = {"stats": write_stats(store, workers=0)["objects"], "anns": anns}
    return out


def extra_share(objects: dict, name: str) -> float:
    cats = {c["name"]: c for c in objects["categories"]}
    return cats[name]["extra"] / sum(c["extra"] for c in cats.values())


def test_stats_count_instances_extra_objects_and_cutouts_per_category(balanced):
    for part in balanced.values():
        objects, anns = part["stats"], part["anns"]
        assert len(anns) == 80 and all(len(a["objects"]) == 3 for a in anns)
        for c in objects["categories"]:
            assert c["instances"] == sum(o["category"] == c["id"] for a in anns for o in a["objects"])
            assert c["extra"] == sum(o["category"] == c["id"] for a in anns for o in a["objects"][1:])
        assert [(c["name"], c["cutouts"]) for c in objects["categories"]] == [("a", 1), ("b", 4)]


def test_balance_categories_pastes_the_small_category_more_often_than_the_default(balanced):
    plain, balance = extra_share(balanced["foregrounds"]["stats"], "a"), extra_share(balanced["categories"]["stats"], "a")
    assert plain < 0.3  # by cut-out: 1 in 5, fewer once its one cut-out is in the composite
    assert balance > plain + 0.05


def test_balance_categories_gives_each_category_about_half_the_extra_objects(balanced):
    assert 0.4 <= extra_share(balanced["categories"]["stats"], "a") <= 0.6


def test_cli_stats_prints_extra_objects_per_category(tmp_path, capsys):
    store = make_store(unequal_categories(tmp_path), tmp_path / "store", placements=1, objects_min=2, objects_max=2, balance="categories")
    assert main(["stats", str(store), "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^instances: [\d,]+ \(a [\d,]+, b [\d,]+\)$", out, re.M)
    assert re.search(r"^extra objects \(2nd on, drawn by --balance\) per category: a \d+ \(\d+%; 1 cut-out\), b \d+ \(\d+%; 4 cut-outs\)$", out, re.M)
    text = write_card(store, workers=0).read_text()
    assert "| category id | name | instances | extra objects (2nd on) | cut-outs |" in text
    assert "`--balance categories`" in text
    with Image.open(store / "previews" / "histograms.png") as im:
        assert im.width == 4 + 4 * (360 + 4)  # objects per composite, visible, instances and extra objects per category


# ---------------------------------------------------------------- the variety picture: show and the card


def test_picks_show_each_option_at_its_most():
    config = GenerateConfig(rotate_min=-30.0, rotate_max=30.0, truncate=0.25, blend=("hard", "gaussian"), distractors=True)
    anns = [
        {"key": "k0", "objects": [{"id": 1, "rotate": 5.0, "in_frame": 1.0, "blend": "hard", "area": 100}], "distractors": [{}]},
        {"key": "k1", "objects": [{"id": 1, "rotate": 2.0, "in_frame": 0.8, "blend": "gaussian", "area": 50},
                                  {"id": 2, "rotate": -29.0, "in_frame": 0.9, "blend": "gaussian", "area": 300}],
         "distractors": [{}, {}]},
        {"key": "k2", "objects": [{"id": 1, "rotate": 0.0, "in_frame": 1.0, "blend": "hard", "area": 400}], "distractors": []},
    ]  # fmt: skip
    picks = variety_picks(anns, config, 2)
    assert list(picks) == variety_options(config) == ["rotation", "truncation", "blend", "distractors"]
    assert [(p.key, p.object_id, p.caption) for p in picks["distractors"]] == [("k1", 0, "2 distractor(s)"), ("k0", 0, "1 distractor(s)")]
    assert [(p.key, p.object_id, p.caption) for p in picks["rotation"]] == [("k1", 2, "-29.0 deg"), ("k0", 1, "+5.0 deg")]
    assert [(p.key, p.object_id, p.caption) for p in picks["truncation"]] == [("k1", 1, "in frame 0.80"), ("k0", 1, "in frame 1.00")]
    assert [(p.key, p.object_id, p.caption) for p in picks["blend"]] == [("k2", 1, "hard"), ("k1", 2, "gaussian")]


def test_cells_outline_each_object_in_its_colour_and_box_distractors_in_white():
    ids = np.zeros((16, 16), np.uint8)
    ids[4:10, 4:10] = 2
    img = draw_outlines(np.zeros((16, 16, 3), np.uint8), ids, 1, boxes=[[0, 0, 16, 16]])
    assert img[4, 6].tolist() == PALETTE[1].tolist() and img[7, 7].tolist() == [0, 0, 0]  # outline, inside untouched
    assert img[0, 8].tolist() == img[1, 8].tolist() == [255, 255, 255] and img[2, 8].tolist() == [0, 0, 0]


def test_the_card_of_a_varied_store_shows_a_row_per_option_and_says_each(varied):
    text = write_card(varied, workers=0).read_text()
    assert "![variety](previews/variety.png)" in text
    config = GenerateConfig.from_dict(json.loads((varied / "dataset.json").read_text())["config"])
    options = variety_options(config)
    assert options == ["rotation", "truncation", "blend", "light", "harmonize"]
    for option in options:
        assert OPTION_TITLES[option] in text
    for said in ("rotation by -30..30 degrees", "truncation (up to 0.25 of an object out of the frame)", "blend modes hard, gaussian, motion",
                 "brightness, contrast, saturation by [0.8, 1.2]", "harmonisation toward the background (a fraction up to 0.5)"):  # fmt: skip
        assert f"- **Variety**: " in text and said in text
    with Image.open(varied / "previews" / "variety.png") as im:
        assert im.mode == "RGB"
        assert im.height == len(options) * ROW and im.width >= 4 + 4 * (64 * 3 + 4)  # 4 composites in the rotation row


def test_a_plain_stores_card_has_no_variety(plain):
    text = write_card(plain, workers=0).read_text()
    assert "variety" not in text.lower() and not (plain / "previews" / "variety.png").exists()


def test_show_variety_and_its_refusal_of_a_plain_store(pristine, plain, tmp_path, capsys):
    out = tmp_path / "variety.png"
    assert main(["show", str(pristine), "--kind", "variety", "--n", "2", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.width == max(4 + 2 * (64 * 3 + 4), 4 + 3 * (64 * 3 + 4))  # 2 a row, 3 blend modes
    assert preview(pristine, "variety", 1).shape[2] == 3
    capsys.readouterr()
    assert main(["show", str(plain), "--kind", "variety", "--out", str(tmp_path / "no.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was made with no variety option" in err[0] and not (tmp_path / "no.png").exists()
