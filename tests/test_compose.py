import numpy as np
import pytest

from fgbg.config import GenerateConfig
from fgbg.make.compose import (
    Placement,
    alpha_blend,
    paste_mask,
    sample_perspective_placement,
    sample_placement,
    sample_rng,
)
from fgbg.make.assets import fg_mask
from fgbg.depth.layered import ground_plane_prior


def random_fg(rng, h=40, w=30):
    fg = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    fg[..., 3] = rng.integers(0, 256, (h, w))  # every alpha value, soft edges included
    return fg


def test_alpha_blend_is_within_one_lsb_of_the_float_reference():
    rng = np.random.default_rng(1)
    bg = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fg = random_fg(rng)
    out = alpha_blend(bg, fg, 7, 11)
    a = fg[..., 3:4] / 255.0
    reference = a * fg[..., :3] + (1 - a) * bg[11:51, 7:37]
    assert np.abs(out[11:51, 7:37] - reference).max() <= 1.0
    outside = np.ones((64, 64), bool)
    outside[11:51, 7:37] = False
    np.testing.assert_array_equal(out[outside], bg[outside])  # untouched elsewhere
    assert out is not bg and not np.shares_memory(out, bg)


def test_division_trick_is_exact_over_the_blend_range():
    v = np.arange(65153, dtype=np.uint32)
    np.testing.assert_array_equal((v + 1 + (v >> 8)) >> 8, v // 255)


def test_mask_is_binary_and_exactly_the_placed_alpha():
    rng = np.random.default_rng(2)
    fg = random_fg(rng)
    mask = paste_mask(fg_mask(fg), 5, 9, (64, 64))
    assert set(np.unique(mask)) <= {0, 255}
    expected = np.zeros((64, 64), bool)
    expected[9:49, 5:35] = fg[..., 3] >= 128
    np.testing.assert_array_equal(mask == 255, expected)


def test_same_key_same_placement_other_key_other_placement():
    a = sample_placement(sample_rng(0, "b000_f000_0_00"), (40, 30), (64, 64), (0.5, 1.0))
    b = sample_placement(sample_rng(0, "b000_f000_0_00"), (40, 30), (64, 64), (0.5, 1.0))
    c = sample_placement(sample_rng(0, "b000_f000_1_00"), (40, 30), (64, 64), (0.5, 1.0))
    d = sample_placement(sample_rng(1, "b000_f000_0_00"), (40, 30), (64, 64), (0.5, 1.0))
    assert a == b and a != c and a != d


def test_placement_keeps_the_fg_inside_the_bg():
    for i in range(500):
        p = sample_placement(sample_rng(0, f"k{i}"), (40, 30), (64, 64), (0.5, 1.6))
        assert 0 <= p.x and p.x + p.w <= 64 and 0 <= p.y and p.y + p.h <= 64


def test_perspective_near_is_larger_and_stands_on_the_ground():
    depth = ground_plane_prior(128, 0.4)
    places = [
        sample_perspective_placement(sample_rng(0, f"k{i}"), (40, 30), depth, (0.2, 1.0), ground_top=51)
        for i in range(300)
    ]
    for p in places:
        assert 0 <= p.x and p.x + p.w <= 128 and 0 <= p.y and p.y + p.h <= 128
        assert p.foot[1] >= 51  # feet below the horizon
    feet = np.array([p.foot[1] for p in places])
    heights = np.array([p.h for p in places])
    assert np.corrcoef(feet, heights)[0, 1] > 0.9  # lower in the image = nearer = larger


def test_foot_is_bottom_centre():
    assert Placement(10, 20, 31, 40, 1.0).foot == (25, 59)


class FirstValue:
    """A stand-in generator whose every draw is the lowest value: the top-left foot, every time."""

    def integers(self, low, high=None):
        return low


def test_perspective_fallback_stands_on_the_bottom_row_at_the_near_scale():
    far, near = GenerateConfig(perspective=True, scale_min=0.5, scale_max=0.5).scale_range()
    assert (far, near) == (0.15, 0.5)  # a single --scale S: 0.3 S at inverse depth 0, S at 1
    depth = ground_plane_prior(64, 0.4)
    # a foot on row 0 never fits a fg 40 px tall at any scale >= 0.05: every draw fails
    p = sample_perspective_placement(FirstValue(), (40, 30), depth, (far, near), ground_top=0)
    assert p.foot == (32, 63) and p.scale == near  # the bottom row is inverse depth 1: the near scale
    assert 0 <= p.x and p.x + p.w <= 64 and 0 <= p.y and p.y + p.h <= 64


def test_perspective_feet_at_the_sides_keep_the_scale_of_their_depth():
    across = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))  # inverse depth grows to the right
    places = [sample_perspective_placement(sample_rng(0, f"k{i}"), (40, 30), across, (0.3, 1.0)) for i in range(300)]
    for p in places:
        assert 0 <= p.x and p.x + p.w <= 64 and 0 <= p.y and p.y + p.h <= 64
        assert p.scale == pytest.approx(0.3 + 0.7 * float(across[p.foot[1], p.foot[0]]))  # where it stands, not beside
    assert min(p.x for p in places) == 0 and max(p.x + p.w for p in places) == 64
