"""verify, stats, show and the card on stores with several objects per composite, end to end;
and the card's front matter for the Hugging Face Hub (read back with PyYAML and huggingface_hub)."""

import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fgbg import codecs
from fgbg.cli import main
from fgbg.inspect.card import front_matter, hub_licences, size_category, write_card
from fgbg.inspect.drawing import display_scale
from fgbg.inspect.preview import overlap_indices, preview
from fgbg.inspect.stats import write_stats
from fgbg.inspect.verify import verify
from fgbg.store import read_dataset_json

from .conftest import copy_images, make_store
from .test_verify import rewrite_tar

SEVERAL = dict(objects_min=2, objects_max=4, placements=1)
SHARD = "shards/shard-000001.tar"
KEY = "b001_f000_0_00"  # the first sample of shard 1 (7 samples a shard)


def category_folders(root: Path) -> tuple[Path, Path]:
    """(3 bgs, an fg folder with animals/ (3 cut-outs) and people/ (2))."""
    from fgbg.demo import demo_assets

    bg_src, fg_src = demo_assets()
    bg = copy_images(bg_src, root / "bg", 3, "*.jpg")
    fg = root / "fg"
    for category, names in {"animals": ["cow", "dog", "horse"], "people": ["person_standing", "person_walking"]}.items():
        (fg / category).mkdir(parents=True)
        for name in names:
            (fg / category / f"{name}.png").write_bytes((fg_src / f"{name}.png").read_bytes())
    return bg, fg


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A several-object wds store (3 bgs x 5 fgs x 2 flips = 30 samples, 2-4 objects each), made once."""
    root = tmp_path_factory.mktemp("several")
    return make_store(category_folders(root), root / "store", **SEVERAL)


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A fresh copy of the several-object store, free to damage."""
    import shutil

    return Path(shutil.copytree(pristine, tmp_path / "store", symlinks=True))


def problems(store: Path) -> list[str]:
    return verify(store, workers=0).problems


def json_members(store: Path) -> dict[str, dict]:
    """Every sample's json, read with tarfile (not fgbg's reader)."""
    out = {}
    for tar_path in sorted((store / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for info in tar:
                if info.name.endswith(".json"):
                    out[info.name[: -len(".json")]] = json.loads(tar.extractfile(info).read())
    return out


def change_json(store: Path, edit, key: str = KEY, shard: str = SHARD) -> None:
    """Rewrite the json of sample ``key`` (in ``shard``) through edit(ann) (in place)."""

    def change(name, data):
        if name != f"{key}.json":
            return data
        ann = json.loads(data)
        edit(ann)
        return json.dumps(ann).encode()

    rewrite_tar(store, shard, change)


# ---------------------------------------------------------------- verify


@pytest.mark.parametrize("fmt", ["wds", "folder", "zip"])
def test_a_several_object_store_verifies_clean_in_each_format(tmp_path, fmt):
    store = make_store(category_folders(tmp_path), tmp_path / fmt, format=fmt, **SEVERAL)
    assert "instances.png" in read_dataset_json(store)["members"]
    report = verify(store, workers=0)
    assert report.ok, report.problems
    assert report.samples == 30
    for kind in ("instances", "overlaps"):  # the pictures read every format
        assert preview(store, kind, 2).shape[2] == 3


def test_verify_names_a_json_whose_area_box_or_rle_is_changed(store, capsys):
    ann = json_members(store)[KEY]
    assert len(ann["objects"]) >= 2
    where = f"{SHARD}: {KEY}.json"

    def area(a):
        a["objects"][1]["area"] += 1

    change_json(store, area)
    found = problems(store)
    assert f"{where}: object 2: area {ann['objects'][1]['area'] + 1}, its mask has {ann['objects'][1]['area']} pixel(s)" in found
    assert all(line.startswith(where) for line in found), found
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"fgbg verify: error: {where}: object 2: area" in err and "Traceback" not in err

    def box(a):
        a["objects"][1]["area"] -= 1  # back as it was
        a["objects"][0]["full_box"][1] -= 1

    change_json(store, box)
    x, y, w, h = ann["objects"][0]["full_box"]
    assert problems(store) == [
        f"{where}: object 1: full_box {[x, y - 1, w, h]} is not the tight box of its full mask {[x, y, w, h]}"
    ]

    def rle(a):
        a["objects"][0]["full_box"][1] += 1
        a["objects"][0]["mask"], a["objects"][1]["mask"] = a["objects"][1]["mask"], a["objects"][0]["mask"]

    change_json(store, rle)
    found = problems(store)
    assert any(line.startswith(f"{where}: object 1: mask RLE differs from instances.png == 1 in ") for line in found)
    assert any(line.startswith(f"{where}: object 2: mask RLE differs from instances.png == 2 in ") for line in found)


def test_verify_names_a_changed_instances_png(store):
    ann = json_members(store)[KEY]
    first = ann["objects"][0]

    def relabel(name, data):
        if name != f"{KEY}.instances.png":
            return data
        ids = codecs.decode_png(data).copy()
        x, y, w, h = first["box"]
        ys, xs = np.nonzero(ids[y : y + h, x : x + w] == 1)
        ids[y + ys[0], x + xs[0]] = 2  # one pixel of object 1 now says object 2
        return codecs.encode_png_gray(ids)

    rewrite_tar(store, SHARD, relabel)
    found = problems(store)
    assert any(line.startswith(f"{SHARD}: {KEY}.json: object 1: mask RLE differs from instances.png == 1 in 1 pixel(s)") for line in found), found
    assert any(line.startswith(f"{SHARD}: {KEY}.json: object 2: mask RLE differs from instances.png == 2 in 1 pixel(s)") for line in found)
    assert all(KEY in line for line in found)


def test_verify_names_an_instances_file_of_a_folder_store(tmp_path):
    store = make_store(category_folders(tmp_path), tmp_path / "folder", format="folder", **SEVERAL)
    path = store / "instances" / "b000" / "b000_f000_0_00.png"
    ids = codecs.decode_png(path.read_bytes()).copy()
    ids[0, 0] = 9  # an id no object has, where mask.png says background
    path.write_bytes(codecs.encode_png_gray(ids))
    found = problems(store)
    named = "instances/b000/b000_f000_0_00.png"
    assert f"{named}: 1 pixel(s) disagree with mask.png (it must be 255 exactly where an id > 0)" in found
    assert any(line.startswith(f"{named}: holds id 9, the json has ") for line in found)
    assert any(line.startswith("instances/b000/: sha256 of its files differs") for line in found)


# ---------------------------------------------------------------- stats


def test_stats_count_instances_per_category_and_dropped_objects(store):
    anns = json_members(store)
    objects = write_stats(store, workers=0)["objects"]
    assert objects == json.loads((store / "stats.json").read_text())["objects"]
    meta = read_dataset_json(store)
    assert [c["name"] for c in meta["categories"]] == ["animals", "people"]
    every = [o for a in anns.values() for o in a["objects"]]
    assert objects["images"] == len(anns) == 30
    assert objects["instances"] == len(every)
    assert [c["instances"] for c in objects["categories"]] == [sum(o["category"] == i for o in every) for i in (1, 2)]
    assert all(c["instances"] > 0 for c in objects["categories"])
    assert objects["dropped"] == sum(a["dropped"] for a in anns.values())
    per_image = {}
    for a in anns.values():
        per_image[str(len(a["objects"]))] = per_image.get(str(len(a["objects"])), 0) + 1
    assert objects["per_image"] == dict(sorted(per_image.items())) and set(per_image) <= {"2", "3", "4"}
    assert sum(objects["visible"]["instances"]) == len(every)
    assert objects["visible"]["instances"][-1] == sum(o["visible"] == 1.0 for o in every)
    assert objects["hidden_by_objects"] == sum(any(i > 0 for i in o["hidden_by"]) for o in every) > 0


def test_cli_stats_prints_the_objects(store, capsys):
    assert main(["stats", str(store), "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^instances: [\d,]+ \(animals [\d,]+, people [\d,]+\)$", out, re.M)
    assert re.search(r"^objects per composite: [\d.]+ on average \(2: \d+", out, re.M) and "dropped" in out


# ---------------------------------------------------------------- show and the card


def test_show_draws_instances_overlaps_and_histograms(store, tmp_path, capsys):
    cell = 64 * display_scale(64)
    for kind, n in (("instances", 6), ("overlaps", 2), ("histograms", 1)):
        out = tmp_path / f"{kind}.png"
        assert main(["show", str(store), "--kind", kind, "--n", str(n), "--out", str(out)]) == 0
        with Image.open(out) as im:
            assert im.mode == "RGB"
            if kind == "instances":
                assert im.size == (4 + 4 * (cell + 4), 4 + 2 * (cell + 4))  # 6 cells, 4 a row
            if kind == "overlaps":
                assert im.size == (4 + 4 * (cell + 4), 16 + 4 + 2 * (cell + 4))  # 2 rows of 4, a header
    assert capsys.readouterr().err == ""


def test_the_instances_picture_shows_each_object_in_its_colour(store):
    from fgbg.inspect.drawing import FILL_ALPHA, PALETTE
    from fgbg.store.read import StoreReader

    reader = StoreReader(store)
    i = overlap_indices(reader)[0]
    m = reader.read(i)
    rgb, ids = codecs.decode_jpeg(m["fg_bg.jpg"]), codecs.decode_png(m["instances.png"])
    img = preview(reader, "instances", len(reader))  # every sample, in plan order: sample i is cell i
    f = display_scale(64)
    r, c = divmod(i, 4)
    cell = img[4 + r * (64 * f + 4) :][: 64 * f, 4 + c * (64 * f + 4) :][:, : 64 * f]
    centres = cell[f // 2 :: f, f // 2 :: f].astype(int)  # one displayed pixel per stored pixel
    for obj in json.loads(m["json"])["objects"]:
        seen = ids == obj["id"]
        core = seen & np.roll(seen, 1, 0) & np.roll(seen, -1, 0) & np.roll(seen, 1, 1) & np.roll(seen, -1, 1)
        expected = np.rint(rgb * (1 - FILL_ALPHA) + PALETTE[obj["id"] - 1] * FILL_ALPHA)
        tinted = (np.abs(centres - expected).max(axis=2) <= 1)[core]
        assert core.sum() > 20 and tinted.mean() > 0.8  # the rest: boxes and names drawn over it


def test_card_of_a_several_object_store(store):
    text = write_card(store, workers=0).read_text()
    meta = read_dataset_json(store)
    stats = json.loads((store / "stats.json").read_text())
    for kind in ("instances", "overlaps", "histograms"):
        assert f"![{kind}](previews/{kind}.png)" in text
        with Image.open(store / "previews" / f"{kind}.png") as im:
            assert im.mode == "RGB" and im.width > 300
    for c in stats["objects"]["categories"]:
        assert f"| {c['id']} | `{c['name']}` | {c['instances']:,} |" in text
    assert f"extra objects dropped because they never reached `min_visible` 0.5 / `min_area` 0 px: {stats['objects']['dropped']}" in text
    assert "Each composite holds 2 to 4 objects" in text and 'sample["instances.png"]' in text
    head = yaml.safe_load(text.split("---\n")[1])
    assert head["task_categories"] == ["image-segmentation", "depth-estimation", "object-detection"]
    assert head["size_categories"] == ["n<1K"] and meta["counts"]["samples"] == 30
    assert head["configs"] == [{"config_name": "default", "data_files": "shards/*.tar"}]
    # the 3 bgs are the first demo photos (OpenCV's and a CC0 one), the fgs the MIT-licensed emoji
    assert head["license"] == ["apache-2.0", "bsd-3-clause", "cc0-1.0", "mit"]
    assert verify(store, workers=0).ok


def test_datasets_loads_the_store_by_the_configs_of_its_card(store, tmp_path, monkeypatch):
    """load_dataset(STORE) reads the front matter's configs: the samples of the shards. Without the card
    it would take the store for an image folder of its prepared assets."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    write_card(store, workers=0)
    ds = datasets.load_dataset(str(store), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 30
    assert {"fg_bg.jpg", "mask.png", "depth.png", "instances.png", "json"} <= set(ds.column_names)
    anns = json_members(store)
    row = ds[0]
    assert row["json"]["objects"] == anns[row["__key__"]]["objects"]
    with tarfile.open(row["__url__"]) as tar:
        stored = codecs.decode_png(tar.extractfile(f"{row['__key__']}.instances.png").read())
    assert np.array_equal(np.asarray(row["instances.png"]), stored)


def test_the_hub_reads_the_front_matter(folders, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    store = make_store(folders, tmp_path / "one", format="folder")
    text = write_card(store, workers=0).read_text()
    assert text.startswith("---\n")
    card = huggingface_hub.DatasetCard(text)  # the Hub's own parser of README front matter
    assert card.data.task_categories == ["image-segmentation", "depth-estimation"]  # one object: no detection
    assert card.data.size_categories == ["n<1K"] and card.data.pretty_name == "one"
    assert card.data.license == ["apache-2.0", "bsd-3-clause", "cc0-1.0", "mit"]
    assert card.data.to_dict().get("configs") is None  # a folder store: no shards for the viewer
    assert "# one: a synthetic foreground/background dataset" in card.text


def test_front_matter_values():
    meta = {"config": {"objects_max": 1}, "counts": {"samples": 400_000}, "format": "wds"}
    head = yaml.safe_load(front_matter(meta, None, 'a "quoted": name').strip("-\n"))
    assert head["license"] == "other" and head["pretty_name"] == 'a "quoted": name'
    assert head["size_categories"] == ["100K<n<1M"]
    assert [size_category(n) for n in (0, 999, 1000, 9999, 10_000, 10**6, 10**12)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "1M<n<10M", "n>1T"]  # fmt: skip
    assert hub_licences("# Sources\n\n- office.jpg: CC0, by A. Person\n") == ["cc0-1.0"]
    assert hub_licences("| file | licence |\n| --- | --- |\n| a.jpg | CC BY-SA 4.0 |\n| b.jpg | Unsplash |\n") == [
        "cc-by-sa-4.0", "other"]  # fmt: skip
    assert hub_licences("All mine.") == ["other"] and hub_licences(None) == ["other"]


def test_show_overlaps_of_a_single_object_store_is_one_line(folders, tmp_path, capsys):
    store = make_store(folders, tmp_path / "one")
    out = tmp_path / "o.png"
    assert main(["show", str(store), "--kind", "overlaps", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no composite" in err and "Traceback" not in err and not out.exists()
    # instances of a single-object store: its mask, boxed and named after the fg's folder
    assert main(["show", str(store), "--kind", "instances", "--n", "2", "--out", str(out)]) == 0


def test_more_than_255_objects_take_16_bit_instances_and_verify(tmp_path):
    from .conftest import demo_folders

    store = make_store(demo_folders(tmp_path, 1, 2), tmp_path / "many", objects_min=256, objects_max=260,
                       fg_size=8, placements=1, min_visible=0.0)  # fmt: skip
    assert verify(store, workers=0).ok
    anns = json_members(store)
    key = sorted(anns)[0]
    assert len(anns[key]["objects"]) > 255

    def narrow(name, data):
        return codecs.encode_png_gray(np.minimum(codecs.decode_png(data), 255).astype(np.uint8)) if name == f"{key}.instances.png" else data

    rewrite_tar(store, "shards/shard-000000.tar", narrow)
    found = problems(store)
    assert found == [f"shards/shard-000000.tar: {key}.instances.png: mode L, expected 16-bit grey"]
