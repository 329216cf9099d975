"""The variety operations (fgbg.make.variety) against outside references: PIL, cv2, scipy, colorsys."""

from __future__ import annotations

import colorsys
import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from scipy import ndimage

from fgbg.make.assets import demo_assets, fg_mask, trim_to_alpha
from fgbg.make.compose import alpha_blend
from fgbg.make.variety import (
    BLEND_MODES,
    blend,
    draw_blend_mode,
    draw_blend_params,
    draw_harmonize,
    draw_light,
    draw_rotation,
    harmonize,
    jitter_light,
    rotate_rgba,
)


def blob(h: int = 23, w: int = 37, seed: int = 1) -> np.ndarray:
    """uint8 (h, w, 4): random colours under a soft elliptic alpha, with a 2 px transparent border."""
    yy, xx = np.mgrid[:h, :w]
    alpha = np.clip(255 * (1.5 - np.hypot((xx - (w - 1) / 2) / (w / 2 - 2), (yy - (h - 1) / 2) / (h / 2 - 2))), 0, 255)
    alpha[:2] = alpha[-2:] = 0
    alpha[:, :2] = alpha[:, -2:] = 0
    colour = np.random.default_rng(seed).integers(0, 256, (h, w, 3))
    return np.dstack([colour, alpha]).astype(np.uint8)


def demo_fg() -> np.ndarray:
    """A real cut-out from the demo assets, trimmed, at about 60 px."""
    image = Image.open(sorted(demo_assets()[1].glob("*.png"))[0]).convert("RGBA")
    image.thumbnail((60, 60))
    return trim_to_alpha(np.asarray(image))


def photo(w: int = 64, h: int = 48) -> np.ndarray:
    """uint8 (h, w, 3): a real background photo from the demo assets."""
    image = Image.open(sorted(demo_assets()[0].glob("*.jpg"))[0]).convert("RGB")
    return np.asarray(image.resize((w, h), Image.BILINEAR))


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgba, "RGBA").convert("RGBa")).astype(int)


# ---------------------------------------------------------------- rotation


@pytest.mark.parametrize("angle", [10, 33.3, 45, 135, 200, -17, 271.5])
def test_rotation_matches_pil_rotate_expand_of_the_premultiplied_image(angle):
    sprite = blob()
    turned, _ = rotate_rgba(sprite, angle)
    reference = np.asarray(Image.fromarray(sprite, "RGBA").convert("RGBa").rotate(angle, Image.BILINEAR, expand=True))
    assert turned.shape == reference.shape
    assert np.abs(premultiplied(turned) - reference).max() <= 2


@pytest.mark.parametrize("angle", [7, 30, 45, 60, 89])
def test_a_white_square_rotated_onto_transparency_has_no_dark_fringe(angle):
    white = np.full((20, 20, 4), 255, np.uint8)
    turned, _ = rotate_rgba(white, angle)
    seen = turned[..., 3] > 0
    assert (turned[..., 3] < 255).any()  # there is an antialiased edge to get wrong
    assert (turned[..., :3][seen] == 255).all()


@pytest.mark.parametrize("angle", [0, 7.5, 15, 22.5, 30, 45, 60, 75, 90])
def test_the_rotated_mask_keeps_the_objects_area(angle):
    fg = demo_fg()
    area = np.count_nonzero(fg_mask(fg))
    turned, _ = rotate_rgba(fg, angle)
    assert abs(np.count_nonzero(fg_mask(turned)) - area) <= 0.03 * area


@pytest.mark.parametrize("turns", [-1, 1, 2, 3])
def test_quarter_turns_are_exactly_np_rot90(turns):
    sprite = blob(9, 14)
    turned, _ = rotate_rgba(sprite, 90 * turns)
    assert np.array_equal(turned, np.rot90(sprite, turns))


@pytest.mark.parametrize("angle", [0, 360, -720])
def test_no_rotation_returns_the_input_itself(angle):
    sprite = blob()
    turned, moved = rotate_rgba(sprite, angle)
    assert turned is sprite and moved == (0, 0)


@pytest.mark.parametrize("angle", [13, 45, 90, 161])
@pytest.mark.parametrize("shape", [(21, 31), (22, 30), (21, 30)])
def test_placed_at_the_offset_the_rotation_keeps_the_objects_centre(angle, shape):
    sprite = blob(*shape)  # symmetric about its centre
    turned, (dx, dy) = rotate_rgba(sprite, angle)
    before = ndimage.center_of_mass(sprite[..., 3].astype(float))
    after = ndimage.center_of_mass(turned[..., 3].astype(float))
    assert abs(after[0] + dy - before[0]) <= 0.51 and abs(after[1] + dx - before[1]) <= 0.51


# ---------------------------------------------------------------- blending

PARAMS = {"hard": {}, "gaussian": {"sigma": 1.5}, "motion": {"length": 7, "angle": 30.0}, "poisson": {}}
REACH = {"hard": 0, "gaussian": 5, "motion": 3, "poisson": 2}  # px a mode may change beyond the sprite's box


def test_hard_is_fgbgs_alpha_paste_and_rounds_the_float_blend():
    bg, fg = photo(), demo_fg()[:40, :40]
    out = blend("hard", bg, fg, 10, 5, {})
    a = fg[..., 3:4] / 255.0
    region = np.rint(a * fg[..., :3] + (1 - a) * bg[5:45, 10:50])
    assert np.array_equal(out[5:45, 10:50], region)
    assert np.array_equal(out, alpha_blend(bg, fg, 10, 5))


@pytest.mark.parametrize("mode", ["hard", "gaussian", "motion"])
@pytest.mark.parametrize("x, y", [(-9, 4), (40, -6), (50, 30), (-5, -5)])
def test_a_sprite_over_the_frame_edge_is_the_in_frame_part_of_a_paste_on_a_bigger_frame(mode, x, y):
    bg, fg = photo(), blob()
    big = np.pad(bg, ((20, 20), (20, 20), (0, 0)))
    expected = blend(mode, big, fg, x + 20, y + 20, PARAMS[mode])[20:-20, 20:-20]
    assert np.array_equal(blend(mode, bg, fg, x, y, PARAMS[mode]), expected)


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("x, y", [(20, 10), (0, 0), (-6, 30), (50, -3)])
def test_blending_leaves_far_pixels_and_the_inputs_alone(mode, x, y):
    bg, fg = photo(), blob()
    bg_before, fg_before, mask_before = bg.copy(), fg.copy(), fg_mask(fg)
    out = blend(mode, bg, fg, x, y, PARAMS[mode])
    h, w = fg.shape[:2]
    r = REACH[mode]
    far = np.ones(bg.shape[:2], bool)
    far[max(0, y - r) : y + h + r, max(0, x - r) : x + w + r] = False
    assert np.array_equal(out[far], bg[far])
    assert (out != bg).any()
    assert np.array_equal(bg, bg_before) and np.array_equal(fg, fg_before)
    assert np.array_equal(fg_mask(fg), mask_before)  # the mask is the sprite's, whatever the mode


def test_poisson_is_cv2_seamless_clone_of_the_object_grown_by_one_pixel():
    bg = photo()
    fg = blob()
    fg[..., 3] = np.maximum(fg[..., 3], 1)  # every colour visible: nothing for the paste to fill in
    fg = np.pad(fg, ((2, 2), (2, 2), (0, 0)))  # but the 2 px border transparent
    fg[:2, :, 3] = fg[-2:, :, 3] = fg[:, :2, 3] = fg[:, -2:, 3] = 0
    region = cv2.dilate(np.where(fg[..., 3] >= 128, 255, 0).astype(np.uint8), np.ones((3, 3), np.uint8))
    bx, by, bw, bh = cv2.boundingRect(region)
    x, y = 15, 12
    direct = cv2.seamlessClone(np.ascontiguousarray(fg[..., :3]), bg, region, (x + bx + bw // 2, y + by + bh // 2), cv2.NORMAL_CLONE)
    assert np.array_equal(blend("poisson", bg, fg, x, y, {}), direct)


def test_poisson_takes_objects_touching_or_leaving_the_frame():
    bg, fg = photo(), blob()
    for x, y in [(-4, 0), (0, 0), (64 - 37, 48 - 23), (50, 40)]:
        out = blend("poisson", bg, fg, x, y, {})
        assert out.shape == bg.shape and (out != bg).any()


def test_gaussian_feathers_the_alpha_as_scipys_gaussian_filter():
    black = np.zeros((40, 40, 3), np.uint8)
    white = np.full((12, 12, 4), 255, np.uint8)
    out = blend("gaussian", black, white, 14, 14, {"sigma": 1.5})
    alpha = np.zeros((40, 40))
    alpha[14:26, 14:26] = 255
    assert np.abs(out[..., 0] - ndimage.gaussian_filter(alpha, 1.5, mode="constant")).max() <= 2
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_gaussian_feathering_shows_the_objects_colour_not_its_transparent_pixels():
    grey = np.full((30, 30, 3), 128, np.uint8)
    sprite = np.zeros((10, 10, 4), np.uint8)  # transparent black around an opaque white core
    sprite[3:7, 3:7] = 255
    out = blend("gaussian", grey, sprite, 10, 10, {"sigma": 1.0})
    assert (out >= 128).all()  # white over grey never darkens anything


@pytest.mark.parametrize("angle, axis", [(0.0, 1), (90.0, 0)])
def test_motion_streaks_along_its_angle_as_a_box_filter(angle, axis):
    black = np.zeros((40, 40, 3), np.uint8)
    white = np.full((10, 10, 4), 255, np.uint8)
    out = blend("motion", black, white, 15, 15, {"length": 7, "angle": angle})
    alpha = np.zeros((40, 40))
    alpha[15:25, 15:25] = 255
    assert np.abs(out[..., 0] - ndimage.uniform_filter1d(alpha, 7, axis=axis, mode="constant")).max() <= 1


def test_motion_at_45_degrees_streaks_up_to_the_right_as_seen_on_screen():
    black = np.zeros((21, 21, 3), np.uint8)
    dot = np.full((1, 1, 4), 255, np.uint8)
    lit = blend("motion", black, dot, 10, 10, {"length": 5, "angle": 45.0})[..., 0] > 0
    rows, cols = np.nonzero(lit)
    assert lit[8, 12] and lit[12, 8] and not lit[12, 12] and not lit[8, 8]
    assert ((rows - 10) * (cols - 10) <= 0).all()


def test_an_unknown_blend_mode_says_which_exist():
    with pytest.raises(ValueError, match="hard, gaussian, motion, poisson"):
        blend("blur", photo(), blob(), 0, 0, {})


# ---------------------------------------------------------------- light


def test_light_drawn_with_no_jitter_is_the_identity():
    sprite = demo_fg()
    assert jitter_light(sprite, **draw_light(np.random.default_rng(3), 0.0)) is sprite


@pytest.mark.parametrize("hue", [360, -360, 720])
def test_a_hue_turn_of_a_full_circle_is_the_identity(hue):
    sprite = demo_fg()
    assert np.array_equal(jitter_light(sprite, 1, 1, 1, hue), sprite)


@pytest.mark.parametrize("hue", [40, 120, -75])
def test_hue_turns_as_colorsys_hsv(hue):
    sprite = blob()
    out = jitter_light(sprite, 1, 1, 1, hue)
    for rgb, got in zip(sprite[..., :3].reshape(-1, 3)[::7], out[..., :3].reshape(-1, 3)[::7]):
        h, s, v = colorsys.rgb_to_hsv(*(rgb / 255))
        expected = np.array(colorsys.hsv_to_rgb((h + hue / 360) % 1, s, v)) * 255
        assert np.abs(got - expected).max() <= 1


@pytest.mark.parametrize(
    "enhancer, factors",
    [(ImageEnhance.Brightness, dict(brightness=1.3)), (ImageEnhance.Color, dict(saturation=0.6)), (ImageEnhance.Contrast, dict(contrast=1.25))],
)
def test_brightness_saturation_and_contrast_match_pil_image_enhance(enhancer, factors):
    opaque = blob()
    opaque[..., 3] = 255  # PIL weighs every pixel alike
    neutral = dict(brightness=1, contrast=1, saturation=1, hue=0)
    out = jitter_light(opaque, **{**neutral, **factors})
    reference = np.asarray(enhancer(Image.fromarray(opaque[..., :3])).enhance(next(iter(factors.values()))))
    assert np.abs(out[..., :3].astype(int) - reference).max() <= 2


def test_light_never_touches_alpha():
    sprite = blob()
    out = jitter_light(sprite, 0.8, 1.2, 0.7, 10)
    assert np.array_equal(out[..., 3], sprite[..., 3]) and not np.array_equal(out, sprite)


def test_harmonize_by_nothing_is_the_identity():
    sprite = blob()
    assert harmonize(sprite, photo(), 5, 5, 0.0) is sprite


def test_harmonize_fully_gives_the_bgs_mean_and_std_under_the_box():
    rng = np.random.default_rng(5)
    bg = rng.normal(120, 20, (48, 64, 3)).clip(0, 255).astype(np.uint8)
    sprite = np.dstack([rng.normal(80, 30, (20, 30, 3)).clip(0, 255), np.full((20, 30), 255)]).astype(np.uint8)
    out = harmonize(sprite, bg, 10, 15, 1.0)
    under = bg[15:35, 10:40].reshape(-1, 3)
    colour = out[..., :3].reshape(-1, 3).astype(float)
    assert np.abs(colour.mean(axis=0) - under.mean(axis=0)).max() <= 0.5
    assert np.abs(colour.std(axis=0) - under.std(axis=0)).max() <= 0.5
    assert np.array_equal(out[..., 3], sprite[..., 3])


def test_harmonize_halfway_moves_the_mean_halfway():
    bg = np.full((40, 40, 3), 200, np.uint8)
    sprite = np.dstack([np.full((10, 10, 3), 100), np.full((10, 10), 255)]).astype(np.uint8)
    assert (harmonize(sprite, bg, 0, 0, 0.5)[..., :3] == 150).all()


# ---------------------------------------------------------------- draws


def test_draws_are_plain_json_values_repeatable_from_the_seed():
    def draws(seed):
        rng = np.random.default_rng(seed)
        mode = draw_blend_mode(rng, BLEND_MODES)
        return {
            "rotate": draw_rotation(rng, -30, 30),
            "blend": mode,
            "blend_params": {m: draw_blend_params(m, rng) for m in BLEND_MODES},
            "light": draw_light(rng, 0.2),
            "harmonize": draw_harmonize(rng, 0.5),
        }

    first = draws(7)
    assert json.loads(json.dumps(first)) == first == draws(7)
    assert -30 <= first["rotate"] <= 30 and 0 <= first["harmonize"] <= 0.5
    light = first["light"]
    assert all(0.8 <= light[k] <= 1.2 for k in ("brightness", "contrast", "saturation")) and abs(light["hue"]) <= 3.6
