"""fgbg export coco|yolo (issue 19, item 6; issue 25: overwrite, ids, relocation, the forms), checked with the tools people load them with:
pycocotools (COCO, annToMask, COCOeval), cv2.fillPoly as Ultralytics fills YOLO outlines, Hugging Face
``datasets`` (a store as it is). The store is read back here with tarfile/zipfile, not fgbg's reader."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fgbg import codecs
from fgbg.cli import main
from fgbg.exports import VAL_BY, VAL_FRACTION, VAL_SEED, export_store
from fgbg.exports.coco import coco_annotation, join_coco
from fgbg.demo import demo_assets
from fgbg.exports.instances import placed_fg_mask, several_instances, single_instance
from fgbg.make.compose import paste_mask
from fgbg.make.render import Renderer
from fgbg.make.split import split_indices
from fgbg.store.layout import MEMBERS
from fgbg.store.plan import Plan
from fgbg.store.read import StoreReader

from .conftest import SMALL, copy_images, make_store
from .test_objects import sidecar_bgs

# pycocotools' decode passes copy=False to np.array, which numpy 2 warns about on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
SIZE = SMALL["size"]
CATEGORIES = {"animals": ["cow.png", "dog.png", "horse.png"], "people": ["man_dancing.png", "person_walking.png"]}


# ---------------------------------------------------------------- stores, and reading them without fgbg


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """(3 demo bgs, an fg folder with two category sub-folders); one bg has a depth sidecar with a near bar."""
    root = tmp_path_factory.mktemp("in")
    bg_src, fg_src = demo_assets()
    bg = copy_images(bg_src, root / "bg", 3, "*.jpg")
    for name, files in CATEGORIES.items():
        (root / "fg" / name).mkdir(parents=True)
        for f in files:
            (root / "fg" / name / f).write_bytes((fg_src / f).read_bytes())
    return bg, root / "fg"


@pytest.fixture(scope="module")
def stores(folders, tmp_path_factory) -> dict[str, Path]:
    """K=1, K=3 and 2-4 objects in every format: a few tenths of a second each at 64 px."""
    root = tmp_path_factory.mktemp("stores")
    several = dict(objects_min=2, objects_max=4)
    return {
        "k1": make_store(folders, root / "k1"),
        "k3": make_store(folders, root / "k3", objects_min=3, objects_max=3),
        "wds": make_store(folders, root / "wds", **several),
        "folder": make_store(folders, root / "folder", format="folder", **several),
        "zip": make_store(folders, root / "zip", format="zip", **several),
    }


def raw_samples(store: Path) -> dict[str, dict[str, bytes]]:
    """Every sample's members {key: {suffix: bytes}}, read with tarfile / zipfile / open."""
    meta = json.loads((store / "dataset.json").read_text())
    out: dict[str, dict[str, bytes]] = {}
    if meta["format"] == "wds":
        for tar in sorted((store / "shards").glob("*.tar")):
            with tarfile.open(tar) as t:
                for m in t.getmembers():
                    key, suffix = m.name.split(".", 1)
                    out.setdefault(key, {})[suffix] = t.extractfile(m).read()
        return out
    for suffix, (kind, ext) in MEMBERS.items():
        if meta["format"] == "folder":
            for path in (store / kind).glob(f"*/*{ext}"):
                out.setdefault(path.name.removesuffix(ext), {})[suffix] = path.read_bytes()
        else:
            for path in (store / kind).glob("*.zip"):
                with zipfile.ZipFile(path) as z:
                    for name in z.namelist():
                        out.setdefault(name.removesuffix(ext), {})[suffix] = z.read(name)
    return out


def instance_ids(members: dict[str, bytes]) -> np.ndarray:
    """(S, S) instance ids: instances.png, or mask.png > 0 as object 1 in a single-object store."""
    if "instances.png" in members:
        return np.asarray(Image.open(io.BytesIO(members["instances.png"]))).astype(np.int64)
    return (np.asarray(Image.open(io.BytesIO(members["mask.png"]))) > 0).astype(np.int64)


def quiet_eval(gt: COCO, detections: list[dict], kind: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        e = COCOeval(gt, gt.loadRes(detections), kind)
        e.evaluate(), e.accumulate(), e.summarize()
    return float(e.stats[0])


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def held_out_keys(store: Path) -> set[str]:
    """Keys of the split `fgbg train` validates on by default, from the plan (dataset.json)."""
    from fgbg.config import GenerateConfig

    meta = json.loads((store / "dataset.json").read_text())
    plan = Plan.from_config(meta["counts"]["bg"], meta["counts"]["fg"], GenerateConfig.from_dict(meta["config"]))
    return {plan[i].key for i in split_indices(plan, VAL_BY, VAL_FRACTION, VAL_SEED).val}


# ---------------------------------------------------------------- COCO


@pytest.mark.parametrize("name", ["wds", "folder", "zip", "k1"])
def test_coco_export_is_read_by_pycocotools_with_exact_masks_and_ap_1(name, stores, tmp_path):
    store = stores[name]
    summary = export_store(store, tmp_path / "coco", "coco", workers=0, progress=False)
    samples = raw_samples(store)
    keys = sorted(samples)  # zero-padded keys sort in plan order
    val = held_out_keys(store)
    assert 0 < len(val) < len(keys) and summary.images == {"train": len(keys) - len(val), "val": len(val)}
    for split in ("train", "val"):
        gt = load_coco(tmp_path / "coco" / "annotations" / f"instances_{split}.json")
        assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == sorted(CATEGORIES)
        assert {img["file_name"].removesuffix(".jpg") for img in gt.imgs.values()} == {k for k in keys if (k in val) == (split == "val")}
        for image_id, img in gt.imgs.items():
            key = img["file_name"].removesuffix(".jpg")
            assert image_id == keys.index(key) + 1 and (img["width"], img["height"]) == (SIZE, SIZE)
            members = samples[key]
            assert (tmp_path / "coco" / "images" / split / img["file_name"]).read_bytes() == members["fg_bg.jpg"]
            ids = instance_ids(members)
            seen = [int(i) for i in np.unique(ids) if i]
            anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
            assert len(anns) == len(seen)  # one annotation per object seen, none for hidden ones
            objects = json.loads(members["json"]).get("objects")
            for ann, i in zip(sorted(anns, key=lambda a: a["id"]), seen):
                assert np.array_equal(gt.annToMask(ann), ids == i)  # exact
                assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
                assert ann["bbox"] == mask_utils.toBbox(ann["segmentation"]).tolist() and ann["area"] == (ids == i).sum()
                amodal = mask_utils.decode(ann["amodal_segmentation"]).astype(bool)
                assert not ((ids == i) & ~amodal).any()  # what is seen is part of the whole object
                assert ann["amodal_bbox"] == mask_utils.toBbox(ann["amodal_segmentation"]).tolist()
                assert ann["visible_fraction"] == pytest.approx(ann["area"] / amodal.sum(), abs=1e-6)
                if objects:
                    assert ann["category_id"] == objects[i - 1]["category"]
        anns = gt.loadAnns(gt.getAnnIds())
        assert sorted(a["id"] for a in anns) == list(range(anns[0]["id"], anns[0]["id"] + len(anns)))
        segm = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"], "score": 1.0} for a in anns]
        boxes = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in anns]
        assert quiet_eval(gt, segm, "segm") == 1.0 and quiet_eval(gt, boxes, "bbox") == 1.0
    train, val = (set(load_coco(tmp_path / "coco" / "annotations" / f"instances_{s}.json").getAnnIds()) for s in ("train", "val"))
    assert not train & val and train | val == set(range(1, len(train) + len(val) + 1))  # the files merge without a clash


def test_the_split_is_the_one_fgbg_train_uses_by_default():
    pytest.importorskip("torch")
    from fgbg.learn.train import TrainConfig

    t = TrainConfig()
    assert (t.val, t.val_fraction, t.seed) == (VAL_BY, VAL_FRACTION, VAL_SEED)


def test_exports_need_no_torch():
    code = "import sys, fgbg.exports; print(sorted(m for m in ('torch', 'lightning', 'fgbg.learn') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_hidden_single_objects_get_their_whole_mask_as_amodal(folders, tmp_path):
    """K = 1 on a bg with real depth: the amodal mask is the pasted fg's, rebuilt; its share seen is the store's own."""
    bg, fg = folders
    occluding = copy_images(bg, tmp_path / "bg", 2, "*.jpg")
    for path in occluding.glob("*.jpg"):
        depth = np.tile(np.linspace(10000, 40000, SIZE, dtype=np.uint16)[:, None], (1, SIZE))
        depth[:, 24:40] = 65535  # a near post in front of everything
        (tmp_path / "bg" / f"{path.stem}.depth.png").write_bytes(codecs.encode_png_gray(depth))
    store = make_store((occluding, fg), tmp_path / "store", min_visible=0.0)
    export_store(store, tmp_path / "coco", "coco", workers=0, progress=False)
    samples = raw_samples(store)
    hidden = 0
    for split in ("train", "val"):
        gt = load_coco(tmp_path / "coco" / "annotations" / f"instances_{split}.json")
        for ann in gt.loadAnns(gt.getAnnIds()):
            members = samples[gt.imgs[ann["image_id"]]["file_name"].removesuffix(".jpg")]
            recorded = json.loads(members["json"])
            amodal = mask_utils.decode(ann["amodal_segmentation"]).astype(bool)
            visible = instance_ids(members) == 1
            assert not (visible & ~amodal).any()
            assert round(visible.sum() / amodal.sum(), 6) == recorded["visible"] == ann["visible_fraction"]
            assert ann["amodal_bbox"] == [float(v) for v in (recorded["x"], recorded["y"], recorded["w"], recorded["h"])] or recorded["visible"] < 1
            hidden += recorded["visible"] < 1
    assert hidden > 0


def test_depth_maps_are_copied_beside_the_images(stores, tmp_path):
    export_store(stores["wds"], tmp_path / "coco", "coco", depth=True, workers=0, progress=False)
    samples = raw_samples(stores["wds"])
    copied = sorted((tmp_path / "coco" / "depth").glob("*/*.png"))
    assert len(copied) == len(samples)
    for path in copied:
        assert path.read_bytes() == samples[path.stem]["depth.png"]
        assert (tmp_path / "coco" / "images" / path.parent.name / f"{path.stem}.jpg").exists()


def test_worker_processes_write_the_same_bytes(stores, tmp_path):
    for workers in (0, 2):
        export_store(stores["wds"], tmp_path / f"w{workers}", "coco", workers=workers, progress=False)
    for split in ("train", "val"):
        a, b = (tmp_path / f"w{w}" / "annotations" / f"instances_{split}.json" for w in (0, 2))
        assert a.read_bytes() == b.read_bytes()


def test_an_interrupted_export_leaves_nothing_and_a_killed_ones_leftovers_go(stores, tmp_path, monkeypatch):
    import fgbg.exports.run as exports

    real, calls = exports.export_shard, []

    def interrupted(job, shard):
        calls.append(shard)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, shard)

    monkeypatch.setattr(exports, "export_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_store(stores["wds"], tmp_path / "coco", "coco", workers=0, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the export nor its temporary folder
    monkeypatch.setattr(exports, "export_shard", real)
    killed = tmp_path / "coco.export.999999999.tmp"  # what a run killed with -9 leaves (its pid is gone)
    (killed / "images").mkdir(parents=True)
    export_store(stores["wds"], tmp_path / "coco", "coco", workers=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


# ---------------------------------------------------------------- YOLO


def rasterise(row: list[float]) -> np.ndarray:
    """A YOLO polygon (normalised x, y pairs) filled at the image size, as Ultralytics' polygon2mask does (cv2.fillPoly)."""
    points = np.round(np.array(row).reshape(-1, 2) * SIZE).astype(np.int32)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, points[None], color=1)
    return mask.astype(bool)


@pytest.mark.parametrize("name", ["wds", "zip", "k1"])
def test_yolo_outlines_cover_the_visible_masks(name, stores, tmp_path):
    store = stores[name]
    export_store(store, tmp_path / "yolo", "yolo", workers=0, progress=False)
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(sorted(CATEGORIES))) and "path" not in data  # Ultralytics: the yaml's folder
    samples, val = raw_samples(store), held_out_keys(store)
    categories = json.loads((store / "dataset.json").read_text())["fg_categories"]
    ious: dict[bool, list[float]] = {False: [], True: []}  # by: in several parts
    for key, members in samples.items():
        split = "val" if key in val else "train"
        assert (tmp_path / "yolo" / data[split] / f"{key}.jpg").read_bytes() == members["fg_bg.jpg"]
        rows = [line.split() for line in (tmp_path / "yolo" / "labels" / split / f"{key}.txt").read_text().splitlines()]
        ids = instance_ids(members)
        seen = [int(i) for i in np.unique(ids) if i]
        assert len(rows) == len(seen)
        annotation = json.loads(members["json"])
        for row, i in zip(rows, seen):
            category = annotation["objects"][i - 1]["category"] if "objects" in annotation else categories[annotation["fg"]]
            assert int(row[0]) == category - 1
            coords = [float(v) for v in row[1:]]
            assert len(coords) >= 6 and len(coords) % 2 == 0 and 0 <= min(coords) and max(coords) <= 1
            filled, visible = rasterise(coords), ids == i
            assert not (visible & ~filled).any()  # every visible pixel is inside the outline
            parts = ndimage.label(visible, structure=np.ones((3, 3)))[1]
            ious[parts > 1].append((filled & visible).sum() / (filled | visible).sum())
    every = ious[False] + ious[True]
    print(f"\nYOLO outline IoU against the visible masks ({name}): {len(ious[False])} objects in one part: min {min(ious[False]):.3f};"
          f" {len(ious[True])} in several parts: min {min(ious[True] or [1]):.3f}; all: mean {np.mean(every):.4f}")  # fmt: skip
    assert min(ious[False]) >= 0.9 and np.mean(every) >= 0.98
    assert min(ious[True] or [1]) >= 0.8  # the bridges between parts are lines of pixels: long ones across an occluder cost


# ---------------------------------------------------------------- pure functions on hand-made annotations


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode()}


def test_coco_annotations_from_a_hand_made_several_object_sample():
    seen, whole, empty = np.zeros((8, 8), bool), np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    whole[1:5, 2:7] = True
    seen[1:5, 2:4] = True  # the right part hidden
    obj = lambda i, m, f, box, area, cat: {"id": i, "category": cat, "mask": rle(m), "full_mask": rle(f), "box": box,  # noqa: E731
                                           "full_box": [2, 1, 5, 4], "area": area, "visible": area / 20, "in_frame": 1.0}  # fmt: skip
    annotation = {"objects": [obj(1, seen, whole, [2, 1, 2, 4], 8, 2), obj(2, empty, whole, [0, 0, 0, 0], 0, 1)]}
    anns = [coco_annotation(o, 7) for o in several_instances(annotation)]
    assert anns[1] is None  # nothing of object 2 is seen
    a = anns[0]
    assert (a["image_id"], a["category_id"], a["area"], a["bbox"], a["amodal_bbox"]) == (7, 2, 8, [2.0, 1.0, 2.0, 4.0], [2.0, 1.0, 5.0, 4.0])
    assert np.array_equal(mask_utils.decode(a["segmentation"]), seen) and a["visible_fraction"] == 0.4


def test_a_single_object_is_its_mask_and_its_whole_mask_is_rebuilt_only_when_hidden():
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 3:6] = 255

    def never():
        raise AssertionError("rebuilt for an object nothing hides")

    o = single_instance({"fg": 0}, mask, 3, never)
    assert (o.category, o.area, o.box, o.full_box, o.visible) == (3, 6, (3, 2, 3, 2), (3, 2, 3, 2), 1.0)
    whole = np.zeros((8, 8), np.uint8)
    whole[2:6, 3:6] = 255
    o = single_instance({"fg": 0, "visible": 0.5}, mask, 1, lambda: whole)
    assert np.array_equal(mask_utils.decode(o.full_mask), whole > 0) and o.full_box == (3, 2, 3, 4)


def test_a_hidden_pixel_makes_the_whole_mask_differ_even_where_the_rounded_visible_fraction_is_one():
    whole = np.zeros((8, 8), np.uint8)
    whole[2:6, 3:6] = 255
    mask = whole.copy()
    mask[5, 5] = 0  # one pixel hidden: 11/12, as 1.0 rounds from a fg of millions of pixels
    o = single_instance({"fg": 0, "visible": 1.0}, mask, 1, lambda: whole)
    assert np.array_equal(mask_utils.decode(o.full_mask), whole > 0) and o.full_mask != o.mask
    assert (o.area, o.visible) == (11, round(11 / 12, 6))


def test_the_whole_mask_an_export_rebuilds_is_the_mask_the_renderer_pasted(tmp_path):
    store = make_store((sidecar_bgs(tmp_path), demo_assets()[1]), tmp_path / "s", scale_min=0.5, scale_max=1.0, perspective=True)
    r, reader = Renderer.from_store(store), StoreReader(store)
    plan = Plan.from_config(len(r.bg), len(r.fg), r.config)
    hidden = 0
    for i, (key, m) in enumerate(reader.iter_samples()):
        ref, annotation = plan[i], json.loads(m["json"])
        p, _, _ = r.place(ref)
        pasted = paste_mask(r.sprite(ref.fg, ref.flip, p.w, p.h).mask, p.x, p.y, r.config.frame)
        rebuilt = placed_fg_mask(r.fg[ref.fg], annotation, r.config.frame)
        assert ref.key == key and np.array_equal(rebuilt, pasted)
        hidden += annotation["visible"] < 1
    assert hidden > 0


def test_joined_parts_number_the_annotations_from_one_in_order(tmp_path):
    (tmp_path / "i").write_text('{"id":1}\n{"id":2}\n')
    (tmp_path / "a").write_text('{"image_id":1,"x":0}\n{"image_id":1,"x":1}\n')
    (tmp_path / "b").write_text('{"image_id":2,"x":2}\n')
    out = io.BytesIO()
    assert join_coco(out, {"info": {}, "categories": []}, [tmp_path / "i"], [tmp_path / "a", tmp_path / "b"]) == 3
    data = json.loads(out.getvalue())
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3] and [a["x"] for a in data["annotations"]] == [0, 1, 2]
    assert data["images"] == [{"id": 1}, {"id": 2}]


# ---------------------------------------------------------------- Hugging Face datasets reads a store as it is


@pytest.mark.parametrize("name", ["k1", "k3"])
def test_hugging_face_datasets_loads_a_store_with_every_member(name, stores, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    store = stores[name]
    shards = sorted(str(p) for p in (store / "shards").glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", cache_dir=str(tmp_path / "cache"))
    samples = raw_samples(store)
    members = set(json.loads((store / "dataset.json").read_text())["members"])
    assert ("instances.png" in members) == (name == "k3")
    assert len(ds) == len(samples) and set(ds.column_names) == {"__key__", "__url__", *members}
    for row in ds:
        raw = samples[row["__key__"]]
        assert row["fg_bg.jpg"].size == (SIZE, SIZE)
        for png in members - {"fg_bg.jpg", "json"}:
            assert np.array_equal(np.asarray(row[png]), np.asarray(Image.open(io.BytesIO(raw[png]))))
        assert row["json"]["key"] == row["__key__"]
        if name == "k3":
            assert [o["id"] for o in row["json"]["objects"]] == [o["id"] for o in json.loads(raw["json"])["objects"]]


def test_readmes_hugging_face_snippet_runs_as_printed(stores, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # not the user's cache
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_dataset(" in b)
    (tmp_path / "data").symlink_to(stores["k3"])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # as printed, in the folder that holds data/
    assert len(namespace["ds"]) == len(raw_samples(stores["k3"])) and "instances.png" in namespace["row"]


# ---------------------------------------------------------------- the command line


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exports_and_refuses_in_one_line(stores, tmp_path, capsys):
    store = stores["wds"]
    code, out, err = run(capsys, "export", "yolo", store, "--out", tmp_path / "y", "--workers", "0", "--quiet")
    assert code == 0 and "YOLO" in out and (tmp_path / "y" / "data.yaml").exists() and err == ""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    refused = {
        "no form": (["export", "--out", tmp_path / "x"], "FORM"),
        "onnx of a store": (["export", "onnx", store, "--out", tmp_path / "x"], str(store)),
        "depth with yolo": (["export", "yolo", store, "--depth", "--out", tmp_path / "x"], "--depth"),
        "not empty": (["export", "coco", store, "--out", tmp_path / "full"], "full"),
        "overwrite of a user folder": (["export", "coco", store, "--out", tmp_path / "full", "--overwrite"], "full"),
        "inside the store": (["export", "coco", store, "--out", store / "coco", "--overwrite"], "coco"),
        "the store itself": (["export", "coco", store, "--out", store, "--overwrite"], str(store)),
        "not a store": (["export", "coco", tmp_path / "full", "--out", tmp_path / "x"], "full"),
        "no such store": (["export", "coco", tmp_path / "s1typo", "--out", tmp_path / "x"], "s1typo: no such store"),
        "no such checkpoint": (["export", "onnx", tmp_path / "s1typo", "--out", tmp_path / "x"], "s1typo: no such checkpoint"),
        "old form, no such path": (["export", tmp_path / "s1typo", "--out", tmp_path / "x"], "s1typo: no such store or checkpoint"),
        "old form, no --to": (["export", store, "--out", tmp_path / "x"], f"fgbg export coco {store}"),
        "old form, --onnx for COCO": (["export", store, "--to", "coco", "--onnx", tmp_path / "x"], "--onnx"),
    }
    for what, (argv, named) in refused.items():
        try:
            code, _, err = run(capsys, *argv)
        except SystemExit as usage:  # argparse's own one-line usage error
            code, err = usage.code, capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (what, err)
        assert named in err, (what, err)
    assert not (tmp_path / "x").exists() and not (store / "coco").exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    code, _, _ = run(capsys, "export", "coco", store, "--out", tmp_path / "y", "--overwrite", "--workers", "0", "--quiet")
    assert code == 0 and sorted(p.name for p in (tmp_path / "y").iterdir()) == [".fgbg-export.json", "annotations", "images"]
    assert sorted(os.listdir(tmp_path / "y" / "annotations")) == ["instances_train.json", "instances_val.json"]


def test_the_old_spelling_still_works_with_a_note_naming_the_new_form(stores, tmp_path, capsys):
    code, out, err = run(capsys, "export", stores["k1"], "--to", "yolo", "--out", tmp_path / "y", "--workers", "0", "--quiet")
    assert code == 0 and "YOLO" in out and (tmp_path / "y" / "labels").is_dir()
    assert err.strip().splitlines() == [f"fgbg export: note: the same as `fgbg export yolo {stores['k1']} --out {tmp_path / 'y'}"
                                        " --workers 0 --quiet`, the form this takes now; this spelling keeps working"]


def test_overwrite_never_deletes_a_folder_that_is_not_an_export(stores, tmp_path, capsys):
    """The data loss of issue 25: `--overwrite` onto a user's folder deleted precious/src/thesis.tex."""
    precious = tmp_path / "precious"
    (precious / "src").mkdir(parents=True)
    (precious / "src" / "thesis.tex").write_text("\\chapter{years of work}")
    for argv in (["export", "yolo", stores["k1"]], ["export", stores["k1"], "--to", "yolo"], ["export", "coco", stores["k1"]]):
        code, _, err = run(capsys, *argv, "--out", precious, "--overwrite", "--workers", "0", "--quiet")
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(precious) in err and "not an fgbg export" in err, err
        assert (precious / "src" / "thesis.tex").read_text() == "\\chapter{years of work}"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temporary left either
    assert run(capsys, "export", "yolo", stores["k1"], "--out", tmp_path / "y", "--workers", "0", "--quiet")[0] == 0
    (tmp_path / "y" / "data.yaml").write_text("edited")
    assert run(capsys, "export", "coco", stores["k1"], "--out", tmp_path / "y", "--overwrite", "--workers", "0", "--quiet")[0] == 0
    assert not (tmp_path / "y" / "data.yaml").exists() and (tmp_path / "y" / "annotations").is_dir()  # an export is replaced whole


def test_exports_are_relocatable(stores, tmp_path):
    """No absolute path inside: the export moved elsewhere still loads (pycocotools, and the yaml's
    train/val resolved against its own folder as Ultralytics' check_det_dataset does without `path`)."""
    yaml = pytest.importorskip("yaml")
    store = stores["wds"]
    for to in ("coco", "yolo"):
        export_store(store, tmp_path / "here" / to, to, workers=0, progress=False)
        for path in (tmp_path / "here" / to).rglob("*"):
            if path.suffix in (".json", ".yaml"):
                assert str(tmp_path) not in path.read_text(), path
    os.rename(tmp_path / "here", tmp_path / "moved")
    root = tmp_path / "moved"
    for split in ("train", "val"):
        gt = load_coco(root / "coco" / "annotations" / f"instances_{split}.json")
        assert gt.getAnnIds() and all((root / "coco" / "images" / split / im["file_name"]).is_file() for im in gt.loadImgs(gt.getImgIds()))
        assert gt.dataset["info"]["fgbg"]["store"] == store.name
    data = yaml.safe_load((root / "yolo" / "data.yaml").read_text())
    for split in ("train", "val"):
        images = root / "yolo" / data[split]
        assert images.is_dir() and len(list(images.glob("*.jpg"))) == len(list((root / "yolo" / "labels" / split).glob("*.txt"))) > 0
