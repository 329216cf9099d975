"""Several objects per composite (``generate --objects``): depth order, masks that agree, categories, bars.

The masks are checked with pycocotools (the reference COCO RLE decoder), the order analytically:
objects placed by hand on a ground-plane prior and on a room-like depth map.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.make.assets import demo_assets
from fgbg.make.compose import Placement
from fgbg.make.generate import generate
from fgbg.make.occlusion import IdMap, Layer, instance_ids
from fgbg.make.render import Renderer
from fgbg.make.scene import compose_objects, encode_scene, layered_scene
from fgbg.store.plan import SampleRef
from fgbg.store.read import StoreReader

from .conftest import SMALL, copy_images
from .test_crash import snapshot
from .test_user_errors import run

# sha256 over every shard's file and index digests of three single-object stores (see one_object_stores),
# made by fgbg before --objects existed: a single-object store keeps its bytes.
PINNED = {
    "prior": "6251fc77714dec9450d87728adc9dfe2768cd2abb7245498a601097edc7bdbe0",
    "sidecar": "d7a06e88fdc5739edbe1edfb2f41635630f5ea476f9948fa026b044690e0e4d9",
    "zip": "1a465aa1b24a39341ad5a7ecbd7df13e99a1d6a55453ca85ec46d1fc955f3e66",
}
CATEGORIES = {"animals": ["cow", "dog", "elephant", "giraffe", "horse"], "people": ["man_dancing", "person_running", "woman_dancing"]}


def category_folder(root: Path) -> Path:
    """ROOT/fg/{animals,people}/*.png: demo cut-outs sorted into two categories."""
    _, fg_src = demo_assets()
    for name, stems in CATEGORIES.items():
        (root / "fg" / name).mkdir(parents=True)
        for stem in stems:
            shutil.copy(fg_src / f"{stem}.png", root / "fg" / name / f"{stem}.png")
    return root / "fg"


def sidecar_bgs(root: Path, n: int = 3) -> Path:
    """n demo bgs, each with a depth sidecar: a floor ramp and a nearer box standing on it."""
    bg_src, _ = demo_assets()
    folder = root / "sbg"
    folder.mkdir(parents=True)
    for i, path in enumerate(sorted(bg_src.iterdir())[:n]):
        shutil.copy(path, folder / path.name)
        ramp = (np.linspace(0, 1, 64)[:, None] * np.ones((1, 64)) * 40000).astype(np.uint16)
        ramp[20:40, 10 + 5 * i : 30 + 5 * i] = 50000
        Image.fromarray(ramp).save(folder / f"{path.stem}.depth.png")
    return folder


def shard_digest(store: Path) -> str:
    meta = json.loads((store / "dataset.json").read_text())
    parts = [s["files"] for s in meta["shards"]] + [s.get("idx") for s in meta["shards"]]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def test_one_object_stores_keep_the_bytes_they_had_before_several_objects(tmp_path):
    bg, fg = demo_assets()
    configs = {
        "prior": (bg, GenerateConfig(size=64, fg_size=32, placements=2, shard_size=97)),
        "sidecar": (sidecar_bgs(tmp_path), GenerateConfig(size=64, fg_size=32, placements=2, scale_min=0.5, scale_max=1.0, perspective=True, shard_size=50)),
        "zip": (bg, GenerateConfig(size=64, fg_size=32, placements=1, format="zip")),
    }  # fmt: skip
    for name, (bgs, config) in configs.items():
        generate(bgs, fg, tmp_path / name, config, workers=0, progress=False, warn=lambda m: None)
        assert shard_digest(tmp_path / name) == PINNED[name], name
        meta = json.loads((tmp_path / name / "dataset.json").read_text())
        assert meta["members"] == ["fg_bg.jpg", "mask.png", "depth.png", "json"]
        assert meta["categories"] == [{"id": 1, "name": "fg"}] and set(meta["fg_categories"]) == {1}
    # a store made before --objects (no such fields in its config) is the same run: a rerun finds it complete
    path = tmp_path / "prior" / "dataset.json"
    meta = json.loads(path.read_text())
    for name in ("objects_min", "objects_max", "min_area"):
        del meta["config"][name]
    path.write_text(json.dumps(meta))
    bgs, config = configs["prior"]
    assert generate(bgs, fg, tmp_path / "prior", config, workers=0, progress=False, warn=lambda m: None).already_complete


# ---------------------------------------------------------------- depth order, analytically


def test_the_nearest_layer_is_seen_and_ties_go_to_the_lower_id():
    square = np.ones((4, 4), bool)
    far, near = Layer(0, 0, square, 0.3), Layer(2, 2, square, 0.6)
    ids = instance_ids((8, 8), [far, near])
    assert (ids[2:4, 2:4] == 2).all() and (ids[:2, :4] == 1).all() and (ids[4:6, 4:6] == 2).all()
    swapped = instance_ids((8, 8), [far._replace(value=0.6), near._replace(value=0.3)])
    assert (swapped[2:4, 2:4] == 1).all() and (swapped[4:6, 4:6] == 2).all()
    tie = instance_ids((8, 8), [far._replace(value=0.5), near._replace(value=0.5)])
    assert (tie[2:4, 2:4] == 1).all()
    # brute force: at every pixel the covering layer of largest (value, -id)
    rng = np.random.default_rng(0)
    layers = [Layer(int(rng.integers(0, 10)), int(rng.integers(0, 10)), rng.random((6, 6)) < 0.7, float(rng.integers(0, 4)) / 4) for _ in range(6)]
    ids = instance_ids((16, 16), layers)
    for y in range(16):
        for x in range(16):
            covering = [(l.value, -i, i + 1) for i, l in enumerate(layers) if 0 <= y - l.y < 6 and 0 <= x - l.x < 6 and l.mask[y - l.y, x - l.x]]
            assert ids[y, x] == (max(covering)[2] if covering else 0)


def test_the_visible_areas_kept_while_objects_are_added_are_the_id_maps_pixel_counts():
    rng = np.random.default_rng(1)
    scene = IdMap((24, 24))
    for i in range(1, 30):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        layer = Layer(int(rng.integers(0, 24 - w + 1)), int(rng.integers(0, 24 - h + 1)), rng.random((h, w)) < 0.8, float(rng.integers(0, 5)) / 4)
        wins = scene.wins(layer)
        after = scene.areas_with(layer, wins)
        scene.add(layer, wins, after)
        assert after.tolist() == [int((scene.ids == k).sum()) for k in range(1, i + 1)]


@pytest.fixture(scope="module")
def renderer(tmp_path_factory) -> Renderer:
    """A renderer of a 2-object store on demo bgs (the ground-plane prior) with two category folders."""
    root = tmp_path_factory.mktemp("objects")
    bg = copy_images(demo_assets()[0], root / "bg", 2, "*.jpg")
    generate(bg, category_folder(root), root / "store", GenerateConfig(**{**SMALL, "objects_min": 2, "objects_max": 2}), workers=0, progress=False)
    return Renderer.from_store(root / "store")


def decode(rle: dict) -> np.ndarray:
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def two_objects(r: Renderer, bg: int, rows: tuple[int, int]):
    """Fgs 0 and 5 (a cow, a dancer) standing with their feet on ``rows``, overlapping; their scene and members."""
    objects = []
    for fg, (x, foot) in zip((0, 5), ((14, rows[0]), (22, rows[1]))):
        h, w = r.fg[fg].shape[:2]
        objects.append(r.candidate(bg, fg, 0, Placement(x, foot - h + 1, w, h, 1.0)))
    scene = compose_objects(r, bg, objects)
    ref = SampleRef(bg, 0, 0, 0, "b000_f000_0_00")
    members = encode_scene(r, ref, scene, *layered_scene(r, ref, scene))
    return objects, scene, members


def test_the_nearer_object_hides_the_farther_exactly_where_their_alphas_overlap_and_swapping_rows_swaps(renderer):
    r = renderer
    for rows, nearer in (((40, 60), 2), ((60, 40), 1)):  # lower feet stand nearer on the ground-plane prior
        objects, scene, members = two_objects(r, 0, rows)
        farther = 3 - nearer
        full = [np.zeros((64, 64), bool) for _ in objects]
        for f, o in zip(full, objects):
            f[o.p.y : o.p.y + o.p.h, o.p.x : o.p.x + o.p.w] = o.mask > 0
        overlap = full[0] & full[1]
        assert overlap.sum() > 20
        assert (scene.ids[overlap] == nearer).all()
        assert ((scene.ids == farther) == (full[farther - 1] & ~full[nearer - 1])).all()
        depth = np.asarray(Image.open(io.BytesIO(members["depth.png"])))
        foot = objects[nearer - 1].p.foot
        assert (depth[overlap] == r.bg_depth_q[0][foot[1], foot[0]]).all()
        annotation = json.loads(members["json"])
        o_far, o_near = annotation["objects"][farther - 1], annotation["objects"][nearer - 1]
        assert o_far["hidden_by"] == [nearer] and o_near["hidden_by"] == []
        assert (decode(o_far["mask"]) == (scene.ids == farther)).all() and (decode(o_far["full_mask"]) == full[farther - 1]).all()
        assert o_far["area"] == (scene.ids == farther).sum() < o_far["full_area"] == full[farther - 1].sum()
        assert o_near["depth"] > o_far["depth"]


def test_a_table_hides_objects_behind_it_and_objects_on_the_table_hide_the_wall(renderer, tmp_path):
    """A room-like depth map: a far wall above row 32, the floor below, and a table (columns 24-55) whose
    front face (rows 36-50) stands nearer than the floor beside it, its top (rows 33-35) a surface to
    stand on. One object stands on the floor beside the table, farther than its face; one on its top."""
    depth = np.zeros((64, 64), np.float32)
    depth[:32] = 0.2
    depth[32:] = np.linspace(0.3, 1.0, 32)[:, None]
    depth[33:36, 24:56] = 0.74  # the table top
    depth[36:51, 24:56] = 0.76  # its front face
    room = (np.rint(depth * 65535) / 65535).astype(np.float32)  # as a 16-bit sidecar gives it
    r = dataclasses.replace(renderer, bg_depth=[room, renderer.bg_depth[1]], occluding=[True, True])
    behind = r.candidate(0, 0, 0, Placement(0, 48 - r.fg[0].shape[0] + 1, *r.fg[0].shape[1::-1], 1.0))  # on the floor, foot at column 16
    on_top = r.candidate(0, 5, 0, Placement(32, 35 - r.fg[5].shape[0] + 1, *r.fg[5].shape[1::-1], 1.0))  # on the table top
    assert behind.p.foot[0] < 24 and 24 <= on_top.p.foot[0] < 56
    scene = compose_objects(r, 0, [behind, on_top])
    table = np.zeros((64, 64), bool)
    table[33:51, 24:56] = True
    box = lambda o: (slice(o.p.y, o.p.y + o.p.h), slice(o.p.x, o.p.x + o.p.w))  # noqa: E731
    seen_behind = np.zeros((64, 64), bool)
    seen_behind[box(behind)] = behind.mask > 0
    assert (seen_behind & table).sum() > 20 and not (scene.ids[seen_behind & table] == 1).any()  # the table hides it
    assert ((scene.ids == 1) == (seen_behind & ~table & (scene.ids != 2))).all()
    wall = np.zeros((64, 64), bool)
    wall[box(on_top)] = on_top.mask > 0
    wall[32:] = False
    assert wall.sum() > 20 and (scene.ids[wall] == 2).all()  # it hides the wall
    ref = SampleRef(0, 0, 0, 0, "b000_f000_0_00")
    members = encode_scene(r, ref, scene, *layered_scene(r, ref, scene))
    annotation = json.loads(members["json"])
    assert 0 in annotation["objects"][0]["hidden_by"] and annotation["objects"][1]["hidden_by"] == []
    stored = np.asarray(Image.open(io.BytesIO(members["depth.png"])))
    assert (stored[wall] > r.bg_depth_q[0][wall]).all()  # the composite's depth is the nearer surface: the object


def test_objects_whose_depths_round_alike_record_the_order_that_decided_who_is_in_front(renderer):
    """Two feet whose inverse depths differ by less than --depth-bits shows: the recorded depths tie,
    yet the higher id is nearer and in front; its ``order`` says so."""
    depth = np.full((64, 64), 0.5, np.float32)
    depth[60] = 0.5 + 1 / 1024  # object 2's foot row: nearer by less than one 8-bit step
    r = dataclasses.replace(renderer, bg_depth=[depth, renderer.bg_depth[1]])
    objects, scene, members = two_objects(r, 0, (40, 60))
    overlap = np.zeros((64, 64), bool)
    for o in objects:
        region = np.zeros((64, 64), bool)
        region[o.p.y : o.p.y + o.p.h, o.p.x : o.p.x + o.p.w] = o.mask > 0
        overlap = region if o is objects[0] else overlap & region
    assert overlap.any() and (scene.ids[overlap] == 2).all()
    first, second = json.loads(members["json"])["objects"]
    assert first["depth"] == second["depth"] and first["hidden_by"] == [2]
    assert (second["order"], first["order"]) == (1, 2)


def test_a_several_object_store_of_the_layout_before_order_is_not_resumed(tmp_path, capsys):
    bg = copy_images(demo_assets()[0], tmp_path / "bg", 1, "*.jpg")
    fg = category_folder(tmp_path)
    args = ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "s"), "--size", "64", "--fg-size", "32",
            "--placements", "1", "--objects", "2", "--workers", "0", "--quiet"]  # fmt: skip
    assert main(args) == 0
    path = tmp_path / "s" / "dataset.json"
    meta = json.loads(path.read_text())
    assert meta.pop("objects_version") == 2
    path.write_text(json.dumps(meta))  # as fgbg wrote it before each object recorded its order
    before = snapshot(tmp_path / "s")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layout 1" in err and "--overwrite" in err
    assert snapshot(tmp_path / "s") == before


# ---------------------------------------------------------------- whole stores


@pytest.fixture(scope="module", params=["prior", "sidecars"])
def store(request, tmp_path_factory) -> Path:
    """2-5 objects on 3 demo bgs with the ground-plane prior, or with depth sidecars (the bg hides objects too) and perspective."""
    root = tmp_path_factory.mktemp("store")
    out = root / "store"
    if request.param == "prior":
        bg, extra = copy_images(demo_assets()[0], root / "bg", 3, "*.jpg"), {}
    else:
        bg, extra = sidecar_bgs(root), {"perspective": True}
    config = GenerateConfig(size=64 if extra else 96, fg_size=32 if extra else 40, placements=3, shard_size=20, scale_min=0.5,
                            scale_max=1.0, objects_min=2, objects_max=5, min_area=30, **extra)  # fmt: skip
    generate(bg, category_folder(root), out, config, workers=0, progress=False)
    return out


def test_every_object_has_masks_boxes_and_areas_that_agree_with_instances_mask_and_depth(store):
    reader = StoreReader(store)
    meta = reader.meta
    assert meta["members"] == ["fg_bg.jpg", "mask.png", "depth.png", "instances.png", "json"]
    assert meta["categories"] == [{"id": 1, "name": "animals"}, {"id": 2, "name": "people"}]
    files = [s["file"] for s in meta["sources"]["fg"]]
    assert files[0] == "animals/cow.png" and meta["fg_categories"] == [1 if f.startswith("animals/") else 2 for f in files]
    counts, dropped, hidden_by_bg = [], 0, 0
    for key, m in reader.iter_samples():
        a, ids = json.loads(m["json"]), reader.decode(key, "instances.png", m["instances.png"])
        mask, depth = reader.decode(key, "mask.png", m["mask.png"]), reader.decode(key, "depth.png", m["depth.png"])
        objects = a["objects"]
        assert ids.dtype == np.uint8 and (mask == 255 * (ids > 0)).all() and a["mask_area"] == (ids > 0).sum()
        assert ids.max() <= len(objects) and 2 <= len(objects) + a["dropped"] <= 5
        assert (objects[0]["fg"], objects[0]["flip"], objects[0]["foot"]) == (a["fg"], a["flip"], a["foot"])  # object 1: the key's fg
        assert len({o["fg"] for o in objects}) == len(objects)  # 8 fgs: never the same one twice
        for o in objects:
            visible, full = decode(o["mask"]), decode(o["full_mask"])
            assert (visible == (ids == o["id"])).all() and not (visible & ~full).any()
            assert o["area"] == visible.sum() and o["full_area"] == full.sum() and o["in_frame"] == 1.0
            assert o["visible"] == pytest.approx(o["area"] / o["full_area"], abs=1e-6)
            assert o["category"] == meta["fg_categories"][o["fg"]] and o["fg_file"] == files[o["fg"]]
            ys, xs = np.nonzero(visible)
            assert o["box"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert set(o["hidden_by"]) == set(np.unique(ids[full & ~visible]).tolist())
            hidden_by_bg += 0 in o["hidden_by"]
            assert (depth[visible] == round(o["depth"] * 255)).all()  # the depth map is the object's layer where it is seen
            if o["id"] > 1:  # extras meet the bars (object 1 keeps its best draw)
                assert o["visible"] >= 0.5 and o["area"] >= 30
            for other in o["hidden_by"]:  # the recorded order explains who is in front
                assert other == 0 or objects[other - 1]["order"] < o["order"]
        assert sorted(o["order"] for o in objects) == list(range(1, len(objects) + 1))
        counts.append(len(objects))
        dropped += a["dropped"]
    assert set(counts) >= {2, 3, 4} and max(counts) <= 5
    assert (hidden_by_bg > 0) == (reader.meta["sources"]["bg"][0]["depth"] == "sidecar")


def test_the_manifest_holds_each_objects_boxes_without_its_masks(store):
    lines = [json.loads(line) for line in (store / "manifest.jsonl").read_text().splitlines()]
    first = json.loads(StoreReader(store).read(0)["json"])
    assert lines[0]["objects"][0]["box"] == first["objects"][0]["box"]
    assert [o["order"] for o in lines[0]["objects"]] == [o["order"] for o in first["objects"]]
    assert all("mask" not in o and "full_mask" not in o for line in lines for o in line["objects"])


def test_several_object_stores_are_byte_identical_on_one_and_two_workers(tmp_path):
    bg = copy_images(demo_assets()[0], tmp_path / "bg", 2, "*.jpg")
    fg = category_folder(tmp_path)
    for fmt in ("wds", "folder"):
        made = {}
        for workers in ("0", "2"):
            out = tmp_path / f"{fmt}-{workers}"
            assert main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--size", "64", "--fg-size", "32", "--placements", "2",
                         "--shard-size", "9", "--objects", "2:5", "--format", fmt, "--workers", workers, "--quiet"]) == 0  # fmt: skip
            made[workers] = snapshot(out)
        assert made["0"] == made["2"]
        assert any(b".instances.png" in data for data in made["0"].values() if data) or "instances/b000" in made["0"]


def test_a_flat_folder_is_one_category_named_after_it(tmp_path):
    bg = copy_images(demo_assets()[0], tmp_path / "bg", 1, "*.jpg")
    fg = copy_images(demo_assets()[1], tmp_path / "people", 3)
    generate(bg, fg, tmp_path / "store", GenerateConfig(**{**SMALL, "objects_max": 3}), workers=0, progress=False)
    meta = json.loads((tmp_path / "store" / "dataset.json").read_text())
    assert meta["categories"] == [{"id": 1, "name": "people"}] and meta["fg_categories"] == [1, 1, 1]


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--objects", "0"], "--objects"),
        (["--objects", "5:2"], "--objects"),
        (["--objects", "two"], "--objects"),
        (["--min-visible", "1.5"], "--min-visible"),
        (["--min-area", "-3"], "--min-area"),
    ],
)
def test_impossible_object_options_are_one_line_and_nothing_is_written(tmp_path, capsys, flags, named):
    bg = copy_images(demo_assets()[0], tmp_path / "bg", 1, "*.jpg")
    fg = copy_images(demo_assets()[1], tmp_path / "fg", 2)
    code, _, err = run(capsys, "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "out"), "--quiet", *flags)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_category_folder_with_no_images_is_one_line_naming_it(tmp_path, capsys):
    bg = copy_images(demo_assets()[0], tmp_path / "bg", 1, "*.jpg")
    fg = category_folder(tmp_path)
    (fg / "empty").mkdir()
    (fg / "empty" / "notes.txt").write_text("no images here")
    code = main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{fg / 'empty'}: a category folder with no images" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_train_and_evaluate_run_on_a_several_object_store(store, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(store), "--out", str(run), "--size", "32", "--batch", "8", "--epochs", "1", "--workers", "0",
                 "--width", "8", "--threads", "1", "--quiet"]) == 0  # fmt: skip
    assert main(["evaluate", str(run / "last.ckpt"), str(store), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["mask_iou"] <= 1 and 0 <= metrics["baseline_mask_iou"] <= 1  # the union mask is the target


@pytest.mark.parametrize("source", ["estimator", "estimator-per-bg"])
def test_several_objects_with_a_depth_network_verify_and_do_not_depend_on_the_batch(source, tmp_path):
    from fgbg.depth.testing import tiny_onnx_depth
    from fgbg.inspect.verify import verify

    bg = copy_images(demo_assets()[0], tmp_path / "bg", 2, "*.jpg")
    fg = category_folder(tmp_path)
    model = tiny_onnx_depth(tmp_path / "tiny.onnx")
    made = {}
    for batch in ("1", "5"):
        out = tmp_path / f"b{batch}"
        assert main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--size", "64", "--fg-size", "32", "--placements", "1",
                     "--objects", "2:4", "--depth", source, "--model", str(model), "--device", "cpu", "--depth-batch", batch,
                     "--perspective", "--scale", "0.4:1", "--workers", "0", "--quiet"]) == 0  # fmt: skip
        made[batch] = shard_digest(out)  # dataset.json records the batch size: how, not what
        assert verify(out, workers=0).ok
    assert made["1"] == made["5"]


def test_on_rendered_rooms_furniture_hides_objects_behind_it_and_objects_hide_what_is_farther(tmp_path):
    """Real rooms from ``fgbg rooms`` (the numpy ray caster): at every pixel of every object's full mask, what
    is seen is the nearest surface. The bg is seen where it stands nearer than the object (furniture in
    front hides it), the object where the bg is farther (it hides the wall behind it)."""
    from fgbg.rooms.write import render_rooms

    rooms = tmp_path / "rooms"
    render_rooms(rooms, 6, 64, seed=3, renderer="numpy", progress=False, workers=0)
    out = tmp_path / "store"
    config = GenerateConfig(size=64, fg_size=24, placements=3, perspective=True, scale_min=0.6, scale_max=1.0,
                            objects_min=2, objects_max=4, min_visible=0.3)  # fmt: skip
    generate(rooms, category_folder(tmp_path), out, config, workers=0, progress=False)
    reader = StoreReader(out)
    hidden_by_furniture = hiding_farther = 0
    for key, m in reader.iter_samples():
        a = json.loads(m["json"])
        ids = reader.decode(key, "instances.png", m["instances.png"])
        bg_depth = np.asarray(Image.open(out / "assets" / "bg_depth" / f"b{a['bg']:03d}.png"), np.float64) / 65535
        for o in a["objects"]:
            full, value = decode(o["full_mask"]), o["depth"]
            bg_in_front = full & (ids == 0)  # where the bg is seen instead of the object
            assert (bg_depth[bg_in_front] > value).all()
            assert (bg_depth[ids == o["id"]] <= value + 2 / 255).all()  # never a nearer bg behind a seen object
            hidden_by_furniture += bg_in_front.any()
            hiding_farther += (bg_depth[ids == o["id"]] < value - 0.05).any()
    assert hidden_by_furniture > 0 and hiding_farther > 0
