"""COCO compressed RLE written by fgbg.masks: byte for byte what pycocotools' encoder writes; an id map's boxes and areas."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fgbg.masks import box, id_masks, rle_decode, rle_encode


def reference(frame: np.ndarray) -> dict:
    """pycocotools' encoding of a whole bool frame."""
    encoded = coco_mask.encode(np.asfortranarray(frame, dtype=np.uint8))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def random_masks(rng: np.random.Generator, n: int):
    """Bool masks of every kind: noise of any density, blocks, empty, full, touching the first or last pixel."""
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        kind = i % 4
        if kind == 0:
            mask = rng.random((h, w)) < rng.random()
        elif kind == 1:
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h) :, rng.integers(0, w) :] = True  # reaches the last pixel
        elif kind == 2:
            mask = np.zeros((h, w), bool) if i % 8 == 2 else np.ones((h, w), bool)
        else:
            mask = np.kron(rng.random((h // 4 + 1, w // 4 + 1)) < 0.5, np.ones((4, 4), bool))[:h, :w]  # long runs
        yield mask


def test_a_mask_is_encoded_as_pycocotools_encodes_it_and_decodes_back():
    rng = np.random.default_rng(0)
    for mask in random_masks(rng, 400):
        rle = rle_encode(mask)
        assert rle == reference(mask)
        assert (rle_decode(rle) == mask).all()


def test_a_mask_placed_in_a_frame_is_encoded_as_the_whole_frame():
    rng = np.random.default_rng(1)
    for mask in random_masks(rng, 400):
        h, w = mask.shape
        size = max(h, w) + int(rng.integers(0, 6))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        frame = np.zeros((size, size), bool)
        frame[y : y + h, x : x + w] = mask
        assert rle_encode(mask, (size, size), x, y) == reference(frame)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_object_of_an_id_map_is_encoded_boxed_and_counted_in_one_pass_as_its_own_mask(dtype):
    rng = np.random.default_rng(2)
    for i in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        count = int(rng.integers(1, 8))
        ids = rng.integers(0, count + 1, (h, w)).astype(dtype)
        if i % 2:
            ids = np.kron(ids, np.ones((3, 5), dtype))[:h, :w]  # runs across columns
        if i % 5 == 0:
            ids[ids == count] = 0  # an object nothing of which is seen
        got = id_masks(ids, count)
        assert got.rles == [reference(ids == k) for k in range(1, count + 1)]
        assert got.boxes.tolist() == [box(ids == k) for k in range(1, count + 1)]
        assert got.areas.tolist() == [int((ids == k).sum()) for k in range(1, count + 1)]
