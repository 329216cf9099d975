import numpy as np

from fgbg.depth.layered import ground_plane_prior, horizon_row, layered_depth, quantize_depth


def test_prior_is_zero_above_the_horizon_and_increases_below():
    d = ground_plane_prior(100, 0.4)
    h = horizon_row(100, 0.4)
    assert d.dtype == np.float32 and d.shape == (100, 100)
    assert np.all(d[: h + 1] == 0)
    col = d[:, 0]
    assert np.all(np.diff(col[h:]) > 0)  # strictly increasing below the horizon
    assert col[-1] == 1.0
    assert np.all(d == d[:, :1])  # constant along each row


def test_layered_rule_fg_pixels_take_the_foot_value_elsewhere_bg():
    bg = ground_plane_prior(32, 0.25)
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 5:9] = 255
    out = layered_depth(bg, mask, np.float32(0.7))
    assert np.all(out[mask > 0] == np.float32(0.7))
    np.testing.assert_array_equal(out[mask == 0], bg[mask == 0])


def test_quantize_depth_uses_one_fixed_scale():
    d = np.array([[0.0, 0.5, 1.0, 1.2]], np.float32)
    assert quantize_depth(d, 8).tolist() == [[0, 128, 255, 255]]
    assert quantize_depth(d, 16).dtype == np.uint16 and quantize_depth(d, 16)[0, 2] == 65535
