"""fgbg evaluate says what it measured: the run's held-out split on the run's own store, every sample on
any other (unless --split says otherwise), recorded in metrics.json and the report; its picture grids
carry column titles and each row's IoU."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.learn.data import read_entries
from fgbg.learn.evaluate import evaluate
from fgbg.learn.model import ModelConfig
from fgbg.learn.train import TrainConfig, train
from fgbg.learn.viz import READABLE, TITLES, labelled_grid
from fgbg.make.generate import generate

from .conftest import demo_folders

TINY = dict(size=32, fg_size=16, placements=2, shard_size=5)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, its store, another store of other placements) from one short training."""
    root = tmp_path_factory.mktemp("evaluate")
    folders = demo_folders(root)
    store, other = root / "store", root / "other"
    generate(*folders, store, GenerateConfig(**TINY), workers=1, progress=False)
    generate(*folders, other, GenerateConfig(**{**TINY, "placements": 3}, seed=7), workers=1, progress=False)
    config = TrainConfig(epochs=1, size=32, batch=8, workers=0, log_images=2, threads=1)
    train(store, root / "run", config, ModelConfig(width=8), log=quiet, progress=False)
    return root / "run", store, other


def test_on_its_own_store_evaluate_scores_the_held_out_split_and_says_so(run, tmp_path):
    folder, store, _ = run
    meta = json.loads((folder / "run.json").read_text())
    result = evaluate(folder / "best.ckpt", store, tmp_path / "eval", log=quiet)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (saved["split"], saved["store"], saved["n_images"]) == ("val", str(store.resolve()), meta["split"]["n_val"]) and result == saved
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"{meta['split']['n_val']} images of the run's validation split" in report and "split `val`" in report
    # a copy of the store elsewhere is still the run's store: its held-out split, not samples it trained on
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert evaluate(folder / "best.ckpt", copy, tmp_path / "eval2", log=quiet)["split"] == "val"


def test_on_another_store_evaluate_scores_every_sample_unless_split_is_forced(run, tmp_path, capsys):
    folder, store, other = run
    n = len(read_entries(other))
    result = evaluate(folder / "best.ckpt", other, tmp_path / "all", log=quiet)
    assert (result["split"], result["store"], result["n_images"]) == ("all", str(other.resolve()), n)
    assert f"{n} images of every sample of the store (split `all`)" in (tmp_path / "all" / "report.md").read_text()
    assert main(["evaluate", str(folder / "best.ckpt"), str(other), "--out", str(tmp_path / "val"), "--split", "val", "--quiet"]) == 0
    forced = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert forced["split"] == "val" and 0 < forced["n_images"] < n
    assert f"{forced['n_images']} images (the held-out split of {other.resolve()})" in capsys.readouterr().out
    assert evaluate(folder / "best.ckpt", store, tmp_path / "forced", split="all", log=quiet)["n_images"] == len(read_entries(store))


def test_the_report_grids_have_a_title_band_and_a_label_per_row(run, tmp_path):
    folder, store, _ = run
    result = evaluate(folder / "best.ckpt", store, tmp_path / "eval", log=quiet)
    worst = np.asarray(Image.open(tmp_path / "eval" / "worst.png").convert("L"))
    rows = min(16, result["n_images"])
    cell = READABLE  # 32 px samples are shown at 96 px
    band_h, band_w = worst.shape[0] - rows * (cell + 2) - 2, worst.shape[1] - len(TITLES) * (cell + 2) - 2
    assert band_h >= 10 and band_w >= 40  # room for a line of titles and for "IoU 0.123"
    assert (worst[:band_h, band_w:] < 128).any() and (worst[band_h:, :band_w] < 128).any()  # text in both bands


def test_titles_sit_above_their_columns_and_row_labels_follow_the_values():
    cells = [[torch.full((3, 32, 32), 0.5)] * len(TITLES)] * 3
    grid = labelled_grid(cells, row_labels=["IoU 0.500", "IoU 0.500", "IoU 0.987"]).mean(0)
    h, w = grid.shape
    left = w - len(TITLES) * (READABLE + 2) - 2
    top = h - 3 * (READABLE + 2) - 2
    for j in range(len(TITLES)):  # every column has ink in the title band, over its own cell
        x = left + 2 + j * (READABLE + 2)
        assert (grid[:top, x : x + READABLE] < 0.5).any(), TITLES[j]
    label = [grid[top + 2 + i * (READABLE + 2) : top + 2 + i * (READABLE + 2) + READABLE, :left] for i in range(3)]
    assert torch.equal(label[0], label[1]) and not torch.equal(label[0], label[2])  # the same value reads the same, another differs
    assert (label[2] < 0.5).any()


def test_the_robustness_report_reproduces_and_its_aligned_row_is_the_plain_evaluation(run, tmp_path, capsys):
    folder, store, _ = run
    first = evaluate(folder / "best.ckpt", store, tmp_path / "a", log=print)
    line = capsys.readouterr().out
    second = evaluate(folder / "best.ckpt", store, tmp_path / "b", log=quiet, batch_size=5)  # other batches: the same draws
    rows = first["robustness"]
    assert rows == second["robustness"] == json.loads((tmp_path / "a" / "metrics.json").read_text())["robustness"]
    assert [r["bg"] for r in rows] == ["aligned", "shift 1 px", "shift 2 px", "shift 4 px", "rotate 1 deg", "exposure x0.85", "exposure x1.15", "noise 0.03", "jpeg 50"]
    assert (rows[0]["mask_iou"], rows[0]["baseline_mask_iou"], rows[0]["depth_delta1"]) == (first["mask_iou"], first["baseline_mask_iou"], first["depth_delta1"])
    assert any(r["baseline_mask_iou"] != rows[0]["baseline_mask_iou"] for r in rows[1:])  # the bg input did change
    assert "robustness (mask IoU model/differencing): aligned " in line
    report = (tmp_path / "a" / "report.md").read_text()
    assert "| bg input | model mask IoU | differencing mask IoU | model depth delta1 |" in report and "| shift 2 px | " in report


def test_robustness_none_skips_the_report(run, tmp_path, capsys):
    folder, store, _ = run
    assert main(["evaluate", str(folder / "best.ckpt"), str(store), "--out", str(tmp_path / "e"), "--robustness", "none", "--quiet"]) == 0
    assert "robustness" not in json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert "robustness (mask IoU" not in capsys.readouterr().out and "Robustness" not in (tmp_path / "e" / "report.md").read_text()


def test_bg_from_a_retake_folder_feeds_the_second_view_as_the_bg_input(run, tmp_path, capsys):
    folder, _, _ = run
    rooms = tmp_path / "rooms"
    assert main(["rooms", "--out", str(rooms), "--count", "2", "--size", "32", "--renderer", "numpy", "--retake", "--quiet"]) == 0
    _, fg = demo_folders(tmp_path, n_bg=0, n_fg=2)
    store = tmp_path / "store"
    generate(rooms, fg, store, GenerateConfig(**TINY), workers=1, progress=False)
    same = evaluate(folder / "best.ckpt", store, tmp_path / "same", log=quiet, robustness="none")
    retake = evaluate(folder / "best.ckpt", store, tmp_path / "retake", log=quiet, bg_from=rooms / "retake")
    assert retake["bg_from"] == str((rooms / "retake").resolve()) and "robustness" not in retake
    assert retake["baseline_mask_iou"] != same["baseline_mask_iou"]  # another bg input, the same composites
    assert retake["n_images"] == same["n_images"] and "its bg's image in" in (tmp_path / "retake" / "report.md").read_text()
    # the first views given as the folder: exactly the store's own bg input, up to the store's JPEG of it
    own = evaluate(folder / "best.ckpt", store, tmp_path / "own", log=quiet, bg_from=rooms)
    assert abs(own["baseline_mask_iou"] - same["baseline_mask_iou"]) < 0.02
    (rooms / "retake" / "room_000001.jpg").unlink()
    capsys.readouterr()
    assert main(["evaluate", str(folder / "best.ckpt"), str(store), "--out", str(tmp_path / "x"), "--bg-from", str(rooms / "retake"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bg-from" in err[0] and "room_000001.jpg" in err[0] and not (tmp_path / "x").exists()
