import random
import threading
import time

import numpy as np
import pytest

from fgbg.depth.layered import (
    ground_plane_prior,
    horizon_row,
    layered_depth,
    quantize_depth,
)
from fgbg.depth.pipeline import pipeline


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


# ---------------------------------------------------------------- the labelling pipeline


def jittery(seed: int):
    """A sleep of 0-3 ms, different per call: threads finish their items out of order."""
    rng, lock = random.Random(seed), threading.Lock()

    def sleep():
        with lock:
            s = rng.random() * 0.003
        time.sleep(s)

    return sleep


@pytest.mark.parametrize("threads", [0, 4])
def test_pipeline_keeps_input_order_under_random_delays(threads):
    delay = jittery(threads)
    batches = []

    def prepare(i):
        delay()
        return i * 10

    def infer(prepared):
        batches.append(list(prepared))
        return [p + 1 for p in prepared]

    def finish(i, p, q):
        delay()
        return i, p, q, threading.get_ident()

    out = list(pipeline(range(100), prepare, infer, finish, batch=7, threads=threads))
    assert [o[:3] for o in out] == [(i, 10 * i, 10 * i + 1) for i in range(100)]
    # the network sees the items in order, in full batches but the last
    assert [b for batch in batches for b in batch] == [10 * i for i in range(100)]
    assert [len(b) for b in batches] == [7] * 14 + [2]
    assert (len({o[3] for o in out}) > 1) == (threads > 0)  # finished on the pool's threads, or here


def test_pipeline_bounds_the_items_in_flight_and_runs_ahead_of_a_slow_network():
    started, yielded, most = 0, 0, 0
    lock = threading.Lock()

    def source():
        nonlocal started
        for i in range(200):
            with lock:
                started += 1
            yield i

    def infer(prepared):
        time.sleep(0.002)  # the network is the slow part: the threads prepare ahead meanwhile
        return prepared

    for _ in pipeline(source(), lambda i: i, infer, lambda i, p, q: q, batch=8, threads=3, max_in_flight=20):
        yielded += 1
        most = max(most, started - yielded + 1)  # this one was started and not yet handed out
        time.sleep(0.0005)  # a slow consumer (the writer) must not let items pile up
    assert yielded == 200
    assert 8 < most <= 20  # ahead of the network by more than one batch, never past the bound


def test_pipeline_passes_on_an_error_and_stops():
    def prepare(i):
        if i == 13:
            raise ValueError("bad item 13")
        return i

    seen = []
    with pytest.raises(ValueError, match="bad item 13"):  # what came before the error is checked too
        seen.extend(pipeline(range(1000), prepare, lambda p: p, lambda i, p, q: q, batch=4, threads=2))
    assert seen == list(range(len(seen))) and len(seen) <= 12
