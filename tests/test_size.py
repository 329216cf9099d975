"""``--size WxH``: every part of fgbg on frames that are not square (issue 27, item 6).

Stores of 48 x 32 (W x H) made from the demo assets: generate, verify, stats, show, card, the
COCO and YOLO exports, rooms, and train / evaluate / predict; bad sizes; and a square WxH that
is the store ``--size S`` makes, byte for byte.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgbg.cli import main
from fgbg.make.assets import aspect_crop, prepare_bg_depth
from fgbg.rooms.scene import Camera

from .conftest import demo_folders
from .test_exports import load_coco
from .test_outlines import fill_row
from .test_rooms import empty_room, renderer

WIDTH, HEIGHT = 48, 32
FRAME = (HEIGHT, WIDTH)
ARGS = ["--size", f"{WIDTH}x{HEIGHT}", "--fg-size", "16", "--placements", "2", "--workers", "0", "--quiet"]


def generate(folders, out: Path, *extra: str) -> Path:
    bg, fg = folders
    assert main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), *ARGS, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return demo_folders(tmp_path_factory.mktemp("assets"), n_bg=3, n_fg=3)


@pytest.fixture(scope="module")
def one(folders, tmp_path_factory):
    return generate(folders, tmp_path_factory.mktemp("one") / "store")


@pytest.fixture(scope="module")
def several(folders, tmp_path_factory):
    return generate(folders, tmp_path_factory.mktemp("several") / "store", "--objects", "2:3")


def members(store: Path) -> dict[str, dict[str, bytes]]:
    """{key: {suffix: bytes}} of every sample of a wds store."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted((store / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, suffix = m.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(m).read()
    return samples


def image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("which", ["one", "several"])
def test_a_48x32_store_holds_48x32_images_inside_the_frame_and_verifies(which, request, capsys):
    store = request.getfixturevalue(which)
    meta = json.loads((store / "dataset.json").read_text())
    assert meta["frame"] == {"width": WIDTH, "height": HEIGHT}
    assert (meta["config"]["size"], meta["config"]["height"]) == (WIDTH, HEIGHT)
    samples = members(store)
    assert len(samples) == meta["counts"]["samples"] > 0
    right = bottom = 0
    for key, m in samples.items():
        for suffix in ("fg_bg.jpg", "mask.png", "depth.png", *(("instances.png",) if which == "several" else ())):
            assert image(m[suffix]).shape[:2] == FRAME, (key, suffix)
        ann = json.loads(m["json"])
        boxes = [o["full_box"] for o in ann["objects"]] if which == "several" else [[ann["x"], ann["y"], ann["w"], ann["h"]]]
        for x, y, w, h in boxes:
            assert 0 <= x and x + w <= WIDTH and 0 <= y and y + h <= HEIGHT, key
            right, bottom = max(right, x + w), max(bottom, y + h)
    assert right > HEIGHT  # placements use the whole width, not a square of the height
    assert all(np.asarray(Image.open(p)).shape[:2] == FRAME for p in (store / "assets" / "bg").iterdir())
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 0
    assert "every check passed" in capsys.readouterr().out


def test_a_tall_frame_places_objects_down_its_whole_height(folders, tmp_path):
    store = generate(folders, tmp_path / "tall", "--size", "32x48")
    bottoms = [json.loads(m["json"])["y"] + json.loads(m["json"])["h"] for m in members(store).values()]
    assert max(bottoms) > 32 and max(bottoms) <= 48
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 0


def test_backgrounds_and_their_depth_are_centre_cropped_to_the_aspect_or_stretched():
    columns = np.tile(np.arange(96, dtype=np.float32) / 96, (32, 1))  # a 96 x 32 depth map: its column / 96
    assert aspect_crop(Image.new("RGB", (96, 32)), FRAME).size == (48, 32)  # 3:1 cut to 3:2, the full height kept
    assert aspect_crop(Image.new("RGB", (30, 60)), FRAME).size == (30, 20)  # 1:2 cut to 3:2, the full width kept
    cropped = prepare_bg_depth(columns, FRAME, "crop")
    assert cropped.shape == FRAME
    np.testing.assert_allclose(cropped[0], np.arange(24, 72) / 96, atol=1e-6)  # the centre 48 columns, untouched
    stretched = prepare_bg_depth(columns, FRAME, "stretch")
    assert stretched.shape == FRAME and stretched[0, 0] < 0.02 and stretched[0, -1] > 0.98  # all of it, squeezed


def test_stats_show_and_card_say_and_draw_the_frame(several, tmp_path, capsys):
    assert main(["stats", str(several), "--quiet"]) == 0
    assert f"{WIDTH}x{HEIGHT}" in capsys.readouterr().out
    for kind in ("aligned", "instances", "overlaps", "mask"):
        out = tmp_path / f"{kind}.png"
        assert main(["show", str(several), "--kind", kind, "--n", "2", "--out", str(out)]) == 0
        assert Image.open(out).size[0] > WIDTH
    assert main(["card", str(several)]) == 0
    card = (several / "README.md").read_text()
    assert f"{WIDTH}x{HEIGHT} RGB" in card and "3:2" not in card and "48:32 aspect" in card


def test_coco_images_are_48_wide_and_32_high_and_their_masks_are_the_store_masks(several, tmp_path):
    assert main(["export", "coco", str(several), "--out", str(tmp_path / "coco"), "--workers", "0", "--quiet"]) == 0
    samples = members(several)
    for split in ("train", "val"):
        coco = load_coco(tmp_path / "coco" / "annotations" / f"instances_{split}.json")
        assert coco.imgs
        for image_id, entry in coco.imgs.items():
            assert (entry["width"], entry["height"]) == (WIDTH, HEIGHT)
            ids = image(samples[entry["file_name"][: -len(".jpg")]]["instances.png"])
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
                mask = coco.annToMask(ann)
                assert mask.shape == FRAME
                x, y, w, h = ann["bbox"]
                assert x + w <= WIDTH and y + h <= HEIGHT
                assert mask.sum() > 0 and (ids[mask > 0] > 0).all()  # every pixel of it is an object's in the store
        union = {coco.imgs[a["image_id"]]["file_name"] for a in coco.anns.values()}
        assert union


def test_yolo_rows_are_normalised_by_width_and_height_and_fill_back_the_masks(several, tmp_path):
    """Each row, scaled back by W (x) and H (y), is the outline of the object's visible mask in pixels,
    and filled as Ultralytics fills it, it is that mask (as close as on a square frame: test_outlines)."""
    from fgbg.masks import outline

    assert main(["export", "yolo", str(several), "--out", str(tmp_path / "yolo"), "--workers", "0", "--quiet"]) == 0
    samples = members(several)
    labels = sorted((tmp_path / "yolo" / "labels").rglob("*.txt"))
    assert len(labels) == len(samples)
    ious = []
    for path in labels:
        ids = image(samples[path.stem]["instances.png"])
        seen = [int(i) for i in np.unique(ids) if i]
        rows = path.read_text().splitlines()
        assert len(rows) == len(seen)
        for row, i in zip(rows, seen):
            values = np.array(row.split()[1:], np.float64)
            assert values.min() >= 0 and values.max() < 1
            vertices = np.round(values.reshape(-1, 2) * [WIDTH, HEIGHT]).astype(int)
            assert (vertices == outline(ids == i)).all(), path.stem
            fill, visible = fill_row(row, FRAME), ids == i
            ious.append((fill & visible).sum() / (fill | visible).sum())
    assert len(ious) > 20 and min(ious) >= 0.85 and np.mean(ious) >= 0.985  # objects of 60-130 px: a few pixels of edge


def test_rooms_size_wxh_renders_48x32_rooms_that_generate_reads(tmp_path):
    out = tmp_path / "rooms"
    assert main(["rooms", "--out", str(out), "--count", "2", "--size", "48x32", "--renderer", "numpy", "--workers", "0", "--quiet"]) == 0
    for i in range(2):
        assert Image.open(out / f"room_{i:06d}.jpg").size == (WIDTH, HEIGHT)
        assert Image.open(out / f"room_{i:06d}.depth.png").size == (WIDTH, HEIGHT)
    assert json.loads((out / "rooms.json").read_text())["height"] == HEIGHT
    _, fg = demo_folders(tmp_path / "assets", n_bg=1, n_fg=2)
    store = tmp_path / "store"
    assert main(["generate", "--bg", str(out), "--fg", str(fg), "--out", str(store), *ARGS, "--perspective"]) == 0
    assert main(["verify", str(store), "--workers", "0", "--quiet"]) == 0


@pytest.mark.parametrize("kind", ["egl", "numpy"])
@pytest.mark.parametrize("frame", [(33, 65), (65, 33)])
def test_a_floor_in_a_wide_or_tall_frame_is_seen_through_square_pixels(kind, frame):
    """A level camera over a floor: the floor at row r below the horizon is h * f / (r - horizon)
    away, f the focal length in pixels (the fov spans the shorter side), the same in every column."""
    height, width = frame
    camera = Camera((30.0, 0.5, 30.0), yaw=0.0, pitch=0.0, fov=math.radians(60))
    _, depth_m = renderer(kind, frame).render(empty_room((60.0, 3.0, 60.0), camera))
    assert depth_m.shape == frame
    below = slice(height // 2 + 1, height)
    rows = np.arange(height)[below] - height // 2
    f = camera.focal_px(frame)
    assert f == pytest.approx(min(frame) / 2 / math.tan(math.radians(30)))
    assert np.allclose(depth_m[below], (0.5 * f / rows)[:, None], rtol=1e-4)


def test_train_evaluate_and_predict_on_a_48x32_store(several, tmp_path):
    from fgbg.learn.data import StoreDataset
    from fgbg.learn.evaluate import evaluate
    from fgbg.learn.model import ModelConfig
    from fgbg.learn.train import TrainConfig, train

    ds = StoreDataset(several, [0], 32)
    sample = ds[0]
    assert ds.content == (5, 0, 22, 32)  # 48 x 32 -> 32 x 21.3, kept at 32 x 22, centred: not distorted
    assert all(sample[k].shape[-2:] == (32, 32) for k in ("bg", "fg_bg", "mask", "depth"))
    assert not sample["fg_bg"][:, :5].any() and not sample["fg_bg"][:, 27:].any() and sample["fg_bg"][:, 5:27].float().mean() > 10
    run = tmp_path / "run"
    train(several, run, TrainConfig(epochs=1, size=32, batch=8, workers=0, log_images=2, threads=1, bg_aug="none"),
          ModelConfig(width=8), progress=False, log=lambda _: None)  # fmt: skip
    result = evaluate(run / "best.ckpt", several, tmp_path / "eval", log=lambda _: None, progress=False, robustness="none")
    assert result["n_images"] > 0 and all(math.isfinite(result[k]) for k in ("mask_iou", "depth_rmse"))
    bg, fg_bg = tmp_path / "p" / "bg", tmp_path / "p" / "fg_bg"
    bg.mkdir(parents=True), fg_bg.mkdir()
    m = next(iter(members(several).values()))
    (fg_bg / "a.jpg").write_bytes(m["fg_bg.jpg"])
    (bg / "a.jpg").write_bytes((several / "assets" / "bg" / "b000.jpg").read_bytes())
    assert main(["predict", str(run / "best.ckpt"), "--bg", str(bg), "--fg-bg", str(fg_bg), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    assert Image.open(tmp_path / "pred" / "a.mask.png").size == (WIDTH, HEIGHT)
    assert Image.open(tmp_path / "pred" / "a.depth.png").size == (WIDTH, HEIGHT)


def test_the_padding_of_a_letterboxed_sample_is_in_no_metric():
    from fgbg.learn.evaluate import add_batch_metrics
    from fgbg.learn.model import Prediction

    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 10:20, 8:24] = 1
    depth = torch.full((1, 1, 32, 32), 0.5)
    logits = torch.where(mask > 0, 10.0, -10.0)
    logits[..., :5, :] = 10.0  # wrong, but in the padding only
    batch = {"index": torch.tensor([0]), "mask": mask, "depth": depth, "bg": torch.zeros(1, 3, 32, 32), "fg_bg": torch.zeros(1, 3, 32, 32)}
    padded, plain = {}, {}
    add_batch_metrics(padded, Prediction(logits, depth), {**batch, "content": torch.tensor([[5, 0, 22, 32]])}, 0.1)
    add_batch_metrics(plain, Prediction(logits, depth), batch, 0.1)
    assert padded["mask_iou"][0].item() == pytest.approx(1.0)
    assert plain["mask_iou"][0].item() < 0.7  # without the box, the padding's error would count


@pytest.mark.parametrize("verb", ["generate", "rooms"])
@pytest.mark.parametrize("size", ["0x480", "640x", "x480", "640x480x3", "ax4"])
def test_a_bad_size_is_one_line_exit_2_and_nothing_written(verb, size, folders, tmp_path, capsys):
    out = tmp_path / "out"
    bg, fg = folders
    args = ["generate", "--bg", str(bg), "--fg", str(fg)] if verb == "generate" else ["rooms", "--count", "1"]
    try:
        code = main([*args, "--out", str(out), "--size", size, "--quiet"])
    except SystemExit as e:  # argparse's usage errors: a size it cannot read
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "--size" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_square_wxh_is_the_store_size_s_makes_byte_for_byte(folders, tmp_path):
    bg, fg = folders
    common = ["--fg-size", "32", "--placements", "1", "--workers", "0", "--quiet"]
    stores = []
    for size in ("224", "224x224"):
        out = tmp_path / size
        assert main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--size", size, *common]) == 0
        stores.append(out)
    a, b = stores
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    meta_a, meta_b = (json.loads((s / "dataset.json").read_text()) for s in stores)
    assert meta_a["config"] == meta_b["config"] and meta_a["config"]["height"] == 0
    assert meta_a["frame"] == {"width": 224, "height": 224}
