"""benchmarks/bench_variety.py's parts on tiny data: the held-out split, the scoring of independent
composites, the draws it reads from a store's manifest and the issue's three goals."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_variety  # noqa: E402
import independent_compositor  # noqa: E402

from fgbg.learn.metrics import baseline_mask  # noqa: E402
from fgbg.learn.model import Prediction  # noqa: E402

DEMO = ROOT / "fgbg" / "demo_assets"


class Everywhere(torch.nn.Module):
    """A 'network' that marks every pixel as foreground."""

    def forward(self, bg, fg_bg):
        return Prediction(torch.full_like(bg[:, :1], 10.0), torch.zeros_like(bg[:, :1]))


class Differencing(torch.nn.Module):
    """A 'network' that answers what the differencing baseline at ``threshold`` answers."""

    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def forward(self, bg, fg_bg):
        return Prediction(baseline_mask(bg, fg_bg, self.threshold).float() * 2 - 1, torch.zeros_like(bg[:, :1]))


@pytest.fixture(scope="module")
def composites(tmp_path_factory):
    split = bench_variety.split_assets(DEMO / "bg", DEMO / "fg", 3, 4)
    out = tmp_path_factory.mktemp("independent")
    bg, fg = out / "bg", out / "fg"
    for folder, files in ((bg, split["held_bg"]), (fg, split["held_fg"])):
        folder.mkdir()
        for f in files:
            (folder / f.name).write_bytes(f.read_bytes())
    independent_compositor.make(bg, fg, out / "composites", (32, 24), 6, 0, ("hard", "feathered+relit+rotated"))
    return out / "composites"


def test_the_split_holds_out_the_last_bgs_and_png_fgs_and_trains_on_the_rest():
    split = bench_variety.split_assets(DEMO / "bg", DEMO / "fg", 3, 4)
    bgs, fgs = sorted(p.name for p in (DEMO / "bg").iterdir()), sorted(p.name for p in (DEMO / "fg").iterdir())
    assert [p.name for p in split["held_bg"]] == bgs[-3:] and [p.name for p in split["bg"]] == bgs[:-3]
    assert [p.name for p in split["held_fg"]] == [f for f in fgs if f.endswith(".png")][-4:]
    assert sorted(p.name for p in split["fg"] + split["held_fg"]) == fgs and not set(split["fg"]) & set(split["held_fg"])


def test_all_foreground_scores_each_images_mask_share_and_differencing_scores_as_the_baseline(composites):
    folder = composites / "feathered+relit+rotated"
    samples = json.loads((folder / "manifest.json").read_text())["samples"]
    scores = bench_variety.folder_scores(Everywhere(), 0.2, folder, batch=4)  # two batches, the last one short
    assert scores["n_images"] == 6
    assert scores["mask_iou"] == pytest.approx(sum(s["mask_area"] / (32 * 24) for s in samples) / 6, abs=1e-6)
    same = bench_variety.folder_scores(Differencing(0.2), 0.2, folder)
    assert same["mask_iou"] == pytest.approx(same["baseline_mask_iou"]) and 0 < same["mask_iou"] < 1


def test_the_draws_are_counted_from_entries_and_their_objects(tmp_path):
    entries = [{"key": "a"}, {"key": "b", "rotate": 3.0, "blend": "gaussian"}, {"key": "c", "objects": [{"rotate": 1.0}, {"light": [1, 1, 1, 0]}]}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert bench_variety.recorded_draws(tmp_path) == {"rotate": 2, "blend": 1, "light": 1}


def scores(plain_fgbg, plain_hard, variety_fgbg, variety_hard):
    hard = "independent feathered+relit+rotated"
    return {"plain": {"fgbg plain": {"mask_iou": plain_fgbg}, hard: {"mask_iou": plain_hard}},
            "variety": {"fgbg plain": {"mask_iou": variety_fgbg}, hard: {"mask_iou": variety_hard}}}  # fmt: skip


def test_the_goals_are_met_at_their_bounds_and_missed_past_them():
    modes = ("feathered+relit+rotated",)
    met = bench_variety.goals(scores(0.95, 0.90, 0.945, 0.935), modes)
    assert [round(g["value"], 6) for g in met[:3]] == [3.5, 0.5, 1.0] and [g["met"] for g in met[:3]] == [True, True, True]
    missed = bench_variety.goals(scores(0.95, 0.90, 0.94, 0.92), modes)
    assert [round(g["value"], 6) for g in missed[:3]] == [2.0, 1.0, 2.0] and [g["met"] for g in missed[:3]] == [False, False, False]
