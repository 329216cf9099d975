"""Depth-aware paste (issue 14, item 3): nearer bg pixels hide the fg, the mask is its visible part,
too-hidden placements are redrawn deterministically, and prior-only stores do not change."""

import json

import numpy as np
import pytest

from fgbg import codecs
from fgbg.cli import main
from fgbg.config import GenerateConfig
from fgbg.depth.layered import standable
from fgbg.errors import ConfigError
from fgbg.inspect.verify import verify
from fgbg.make.assets import fg_mask
from fgbg.make.compose import (
    VISIBLE_TRIES,
    alpha_blend,
    blend_premultiplied,
    hide,
    paste_mask,
    premultiply,
    sample_placement,
    sample_rng,
)
from fgbg.make.render import Renderer
from fgbg.rooms import render_rooms
from fgbg.store import iter_samples, read_dataset_json
from fgbg.store.layout import asset_paths
from fgbg.store.plan import Plan, SampleRef

from .conftest import make_store

SIZE = 64
FLOOR, BOX = 0.3, 0.8  # inverse depth of the far surface and of the nearer box
BOX_ROWS, BOX_COLS = slice(12, 34), slice(18, 44)


def blob_fg(h: int = 30, w: int = 22) -> np.ndarray:
    """An RGBA cut-out: an ellipse of random colours, soft edge, transparent corners."""
    rng = np.random.default_rng(3)
    fg = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
    fg[..., 3] = np.clip((1.2 - r) * 400, 0, 255).astype(np.uint8)
    return fg


def box_scene() -> tuple[np.ndarray, np.ndarray]:
    """(bg uint8 (S, S, 3), inverse depth float32 (S, S)): a far surface with a nearer box in front."""
    bg = np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    depth = np.full((SIZE, SIZE), FLOOR, np.float32)
    depth[BOX_ROWS, BOX_COLS] = BOX
    return bg, depth


def renderer(depth: np.ndarray, min_visible: float, occluding: bool = True) -> Renderer:
    bg, _ = box_scene()
    config = GenerateConfig(size=SIZE, fg_size=32, min_visible=min_visible, depth_bits=16)
    return Renderer(config, [bg], [depth], [0], [blob_fg()], ["bg.jpg"], ["fg.png"], occluding=[occluding])


def refs(n: int) -> list[SampleRef]:
    plan = Plan(n_bg=1, n_fg=1, flips=1, placements=n, shard_size=n, one_shard_per_bg=False)
    return [plan[i] for i in range(n)]


def test_a_nearer_box_hides_exactly_the_fg_pixels_behind_it():
    bg, depth = box_scene()
    r = renderer(depth, min_visible=0.0)  # every first draw kept: the placements are the plain ones
    box = np.zeros((SIZE, SIZE), bool)
    box[BOX_ROWS, BOX_COLS] = True
    hidden_some = 0
    for ref in refs(40):
        p, fg_bg, mask, visible = r.compose(ref)
        assert p == sample_placement(sample_rng(r.config.seed, ref.key), (30, 22), (SIZE, SIZE), (1.0, 1.0))
        full = paste_mask(fg_mask(blob_fg()), p.x, p.y, (SIZE, SIZE))
        foot_in_box = box[p.foot[1], p.foot[0]]
        silhouette = np.zeros_like(box) if foot_in_box else box  # standing on the box: nothing is nearer
        np.testing.assert_array_equal(mask, np.where(silhouette, 0, full))  # fg alpha mask minus the box
        # the composite: the bg exactly behind the box, the plain paste elsewhere
        plain = alpha_blend(bg, blob_fg(), p.x, p.y)
        np.testing.assert_array_equal(fg_bg[silhouette], bg[silhouette])
        np.testing.assert_array_equal(fg_bg[~silhouette], plain[~silhouette])
        assert visible == pytest.approx(np.count_nonzero(mask) / np.count_nonzero(full))
        # depth: the visible fg at the foot's value, the box keeps its own (nearer) depth
        members = r.encode(ref, p, fg_bg, mask, *r.layered(ref, p, mask), visible)
        ann = json.loads(members["json"])
        out = codecs.decode_png(members["depth.png"]) / 65535
        assert ann["visible"] == pytest.approx(visible, abs=1e-6) and ann["mask_area"] == np.count_nonzero(mask)
        assert np.allclose(out[mask > 0], depth[p.foot[1], p.foot[0]], atol=1e-4)
        assert np.allclose(out[mask == 0], depth[mask == 0], atol=1e-4)
        hidden_some += bool((full > 0)[silhouette].any())
    assert 5 <= hidden_some < 40  # some behind the box, some not


def test_hidden_pixels_blend_to_the_bg_exactly():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    fg = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    hidden = rng.random((16, 16)) < 0.5
    pre, inv, mask = hide(*premultiply(fg), fg_mask(fg), hidden)
    out = blend_premultiplied(bg, pre, inv, 0, 0)
    np.testing.assert_array_equal(out[hidden], bg[hidden])
    np.testing.assert_array_equal(out[~hidden], alpha_blend(bg, fg, 0, 0)[~hidden])
    assert not mask[hidden].any() and (mask[~hidden] == fg_mask(fg)[~hidden]).all()


def plain_draws(r: Renderer, ref: SampleRef, n: int):
    """The first n placements the sample's generator gives, drawn outside the renderer."""
    rng = sample_rng(r.config.seed, ref.key)
    return [sample_placement(rng, (30, 22), (SIZE, SIZE), (1.0, 1.0)) for _ in range(n)]


def test_a_too_hidden_placement_is_redrawn_from_the_same_generator():
    _, depth = box_scene()
    strict, loose = renderer(depth, 0.9), renderer(depth, 0.0)
    redrawn = 0
    for ref in refs(40):
        p, _, _, visible = strict.compose(ref)
        draws = plain_draws(strict, ref, VISIBLE_TRIES)
        seen = [loose.hidden(0, q, loose.sprite(0, 0, q.w, q.h).mask)[1] for q in draws]
        first_ok = next(i for i, v in enumerate(seen) if v >= 0.9)  # the box leaves plenty of room
        assert p == draws[first_ok] and visible == seen[first_ok] >= 0.9
        redrawn += first_ok > 0
        assert strict.compose(ref)[1].tobytes() == strict.compose(ref)[1].tobytes()
    assert redrawn >= 3


def test_when_no_draw_is_visible_enough_the_most_visible_is_kept():
    # nearer towards the top (a ceiling seen from below): everything above the fg's foot row hides it
    depth = np.repeat(np.linspace(1.0, 0.0, SIZE, dtype=np.float32)[:, None], SIZE, axis=1)
    r = renderer(depth, 0.5)
    for ref in refs(5):
        p, _, _, visible = r.compose(ref)
        draws = plain_draws(r, ref, VISIBLE_TRIES)
        seen = [r.hidden(0, q, r.sprite(0, 0, q.w, q.h).mask)[1] for q in draws]
        assert max(seen) < 0.5 and visible == max(seen) and p == draws[seen.index(max(seen))]


def test_min_visible_is_checked():
    with pytest.raises(ConfigError, match="--min-visible"):
        GenerateConfig(min_visible=1.5)


def test_the_ground_plane_prior_hides_nothing_and_its_stores_are_unchanged(folders, tmp_path):
    """Occlusion forced on over the prior's maps changes no pixel: nothing in the prior stands up."""
    out = make_store(folders, tmp_path / "prior", perspective=True, scale_min=0.4, scale_max=1.0)
    plain = Renderer.from_store(out)
    assert plain.occluding == [False] * 3
    forced = Renderer.from_store(out)
    forced.occluding = [True] * 3
    plan = Plan.from_config(3, 3, plain.config)
    for (key, stored), ref in zip(iter_samples(out), (plan[i] for i in range(len(plan)))):
        assert key == ref.key
        assert "visible" not in json.loads(stored["json"])
        members = plain.render_batch([ref])[0][0]
        assert members == {k: stored[k] for k in members}  # the store is what the renderer makes
        hidden = forced.render_batch([ref])[0][0]
        assert json.loads(hidden["json"]).pop("visible") == 1.0
        assert {k: v for k, v in hidden.items() if k != "json"} == {k: v for k, v in members.items() if k != "json"}


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """A few small rendered rooms: NAME.jpg + NAME.depth.png (EGL here, else the numpy fallback)."""
    folder = tmp_path_factory.mktemp("rooms") / "rooms"
    render_rooms(folder, 4, 96, seed=2, progress=False, workers=0)
    return folder


def generate_cli(bg, fg, out, *extra) -> None:
    args = ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--size", "64", "--fg-size", "40",
            "--placements", "6", "--shard-size", "20", "--workers", "0", "--quiet", *extra]  # fmt: skip
    assert main(args) in (0, None)


def test_rooms_feed_generate_end_to_end_with_occlusion(rooms, folders, tmp_path):
    _, fg = folders
    for name, bar in (("a", "0.8"), ("b", "0.8"), ("first-draws", "0")):
        generate_cli(rooms, fg, tmp_path / name, "--perspective", "--scale", "0.5:1.0", "--min-visible", bar)
    generate_cli(rooms, fg, tmp_path / "anywhere", "--perspective", "--scale", "0.5:1.0", "--stand-on", "anywhere")
    out = tmp_path / "a"
    meta = read_dataset_json(out)
    assert meta["config"]["min_visible"] == 0.8
    assert meta["depth"]["source"] == "layered" and "ground-plane prior" not in meta["depth"]["bg_maps"]
    assert sum(meta["depth"]["bg_maps"].values()) == 4
    assert verify(out, workers=0).ok
    for shard in sorted((out / "shards").iterdir()):  # the same command twice: the same bytes
        assert shard.read_bytes() == (tmp_path / "b" / "shards" / shard.name).read_bytes()
    anns = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    visible = np.array([a["visible"] for a in anns])
    assert (visible < 1).sum() >= 3 and (visible >= 0.8).mean() > 0.9
    first = [json.loads(line) for line in (tmp_path / "first-draws" / "manifest.jsonl").read_text().splitlines()]
    redrawn = [a["key"] for a, f in zip(anns, first) if f["visible"] < 0.8]
    assert all(a == f for a, f in zip(anns, first) if f["visible"] >= 0.8)  # kept first draws: the same sample
    assert redrawn
    for a, f in zip(anns, first):
        if f["visible"] < 0.8 <= a["visible"]:  # a later draw reached the bar: another placement
            assert (a["x"], a["y"]) != (f["x"], f["y"])
        elif f["visible"] < 0.8:  # none did: the most visible of the draws, perhaps the first
            assert a["visible"] >= f["visible"]
    bg_depth = [codecs.decode_png(p.read_bytes()) for p in asset_paths(out, "bg_depth", 4)]
    # every foot stands on a surface facing up (--stand-on up, the default), none on a wall
    up = [standable(d / 65535) for d in bg_depth]
    assert all(up[a["bg"]][a["foot"][1], a["foot"][0]] for a in anns)
    anywhere = [json.loads(line) for line in (tmp_path / "anywhere" / "manifest.jsonl").read_text().splitlines()]
    assert sum(not up[a["bg"]][a["foot"][1], a["foot"][0]] for a in anywhere) >= 0.2 * len(anywhere)  # walls too
    for (key, m), ann in zip(iter_samples(out), anns):
        mask, depth = codecs.decode_png(m["mask.png"]), codecs.decode_png(m["depth.png"]).astype(int)
        expected_bg = np.rint(bg_depth[ann["bg"]] / 65535 * 255).astype(int)
        fx, fy = ann["foot"]
        assert np.all(depth[mask > 0] == expected_bg[fy, fx]) and ann["mask_area"] == np.count_nonzero(mask)
        # every pixel in the fg's box where the room is nearer than the fg is off the mask
        box = (slice(ann["y"], ann["y"] + ann["h"]), slice(ann["x"], ann["x"] + ann["w"]))
        nearer = bg_depth[ann["bg"]][box] / 65535 > bg_depth[ann["bg"]][fy, fx] / 65535 + 1 / 256
        assert not mask[box][nearer].any()
        np.testing.assert_array_equal(depth[mask == 0], expected_bg[mask == 0])


def drop_field(store, field: str) -> None:
    """Make ``store`` look as if made before the config ``field`` existed."""
    path = store / "dataset.json"
    meta = json.loads(path.read_text())
    del meta["config"][field]
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("field", ["min_visible", "stand_on"])
def test_a_store_made_before_a_real_depth_field_is_still_the_same_run_where_it_changes_nothing(field, rooms, folders, tmp_path):
    """Prior-only: the default makes the same bytes, so the rerun finds it complete. Real bg depth:
    its shards were pasted without occlusion (or with feet anywhere), so the rerun refuses it as another config."""
    bg, fg = folders
    prior = make_store(folders, tmp_path / "prior")
    drop_field(prior, field)
    args = ["--size", "64", "--fg-size", "32", "--placements", "2", "--shard-size", "7", "--workers", "0", "--quiet"]
    assert main(["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(prior), *args]) in (0, None)
    generate_cli(rooms, fg, tmp_path / "rooms")
    drop_field(tmp_path / "rooms", field)
    code = main(["generate", "--bg", str(rooms), "--fg", str(fg), "--out", str(tmp_path / "rooms"), "--size", "64",
                 "--fg-size", "40", "--placements", "6", "--shard-size", "20", "--workers", "0", "--quiet"])  # fmt: skip
    assert code == 2
