"""The pure parts of inspecting several objects: RLE decoding (against pycocotools), the checks verify
runs on one sample, the counts, the pictures of instances and bar charts."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fgbg.inspect.annotations import ObjectCounts, check_objects, count_objects, visible_bin
from fgbg.inspect.drawing import (
    FILL_ALPHA,
    PALETTE,
    bar_chart,
    colour,
    display_scale,
    draw_hidden,
    draw_instances,
    edges,
)
from fgbg.masks import box as tight_box, rle_decode

S = 32


def coco_rle(mask: np.ndarray) -> dict:
    """pycocotools' own encoding, counts as a str (as the store keeps it)."""
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def coco_box(mask: np.ndarray) -> list[int]:
    """pycocotools' box of a mask ([x, y, w, h] floats), as ints."""
    return [int(v) for v in coco_mask.toBbox(coco_rle(mask))]


@pytest.mark.parametrize("seed", range(6))
def test_rle_decode_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 120, 2))
    masks = [
        rng.random((h, w)) < rng.random(),  # noise: many short runs
        np.zeros((h, w), bool),
        np.ones((h, w), bool),
    ]
    block = np.zeros((h, w), bool)
    block[rng.integers(0, h) :, rng.integers(0, w) : rng.integers(0, w + 1)] = True
    masks.append(block)
    for mask in masks:
        rle = coco_rle(mask)
        ours = rle_decode(rle)
        assert ours.shape == (h, w) and ours.dtype == bool
        np.testing.assert_array_equal(ours, coco_mask.decode(rle).astype(bool))
        np.testing.assert_array_equal(ours, mask)
        assert tight_box(ours) == (coco_box(mask) if mask.any() else [0, 0, 0, 0])


def test_rle_decode_of_large_runs_and_negative_deltas():
    mask = np.zeros((1000, 700), bool)
    mask[5:990, 3:698] = True  # runs above 2**15: several 5-bit groups
    mask[500:502, 100:400] = False  # then short runs: negative differences
    np.testing.assert_array_equal(rle_decode(coco_rle(mask)), mask)


@pytest.mark.parametrize(
    "rle, why",
    [
        ({"size": [4, 4], "counts": "0" * 3}, "not 4x4"),  # runs add up to 0
        ({"size": [4, 4], "counts": "<"}, "not 4x4"),  # a run of 12 in a 16-pixel image
        ({"size": [4, 4], "counts": "g"}, "middle of a number"),  # 0x37: "more groups follow", then nothing
        ({"size": [4, 4], "counts": "2 2"}, "alphabet"),
        ({"size": [4, 4], "counts": b"22"}, "not a compressed RLE"),
        ({"size": [4], "counts": "22"}, "is not \\[H, W\\]"),
        ({"size": [2, 2], "counts": "0O"}, "negative"),  # second count -1
    ],
)
def test_a_damaged_rle_is_a_value_error(rle, why):
    with pytest.raises(ValueError, match=why):
        rle_decode(rle)


# ---------------------------------------------------------------- one sample's checks


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r * r


def sample() -> tuple[dict, np.ndarray, np.ndarray]:
    """A consistent sample: object 1 (near) hides part of object 2; object 3 stands alone."""
    full = {1: disc(10, 12, 7), 2: disc(16, 12, 7), 3: disc(25, 26, 4)}
    ids = np.zeros((S, S), np.uint8)
    for i in (3, 2, 1):
        ids[full[i]] = i
    objects = []
    for i in (1, 2, 3):
        seen = ids == i
        hiding = sorted(int(v) for v in np.unique(ids[full[i]]) if v != i)
        objects.append({
            "id": i, "category": 1 + (i == 3), "box": coco_box(seen), "full_box": coco_box(full[i]),
            "area": int(seen.sum()), "full_area": int(full[i].sum()), "visible": round(seen.sum() / full[i].sum(), 6),
            "hidden_by": hiding, "mask": coco_rle(seen), "full_mask": coco_rle(full[i]),
        })  # fmt: skip
    mask = np.where(ids > 0, 255, 0).astype(np.uint8)
    return {"key": "b000_f000_0_00", "mask_area": int((ids > 0).sum()), "objects": objects, "dropped": 0}, ids, mask


def test_a_consistent_sample_has_no_problem():
    ann, ids, mask = sample()
    assert ann["objects"][1]["hidden_by"] == [1] and ann["objects"][1]["visible"] < 1
    assert check_objects(ann, ids, mask, n_categories=2) == []


def damaged(change) -> list[tuple[str, str]]:
    ann, ids, mask = sample()
    change(ann, ids, mask)
    return check_objects(ann, ids, mask, n_categories=2)


def test_each_disagreement_is_one_problem_naming_the_member_and_object():
    def area(ann, ids, mask):
        ann["objects"][1]["area"] += 3

    def box(ann, ids, mask):
        ann["objects"][2]["box"][2] += 1

    def full_box(ann, ids, mask):
        ann["objects"][0]["full_box"] = ann["objects"][0]["box"] = [0, 0, S, S]

    def rle(ann, ids, mask):
        ann["objects"][2]["mask"] = ann["objects"][0]["mask"]  # object 1's pixels under object 3's name

    def instance(ann, ids, mask):
        ids[0, 0] = 2  # an id where mask.png has none and object 2's RLE has none

    found = damaged(area)
    assert len(found) == 2 and all(suffix == "json" for suffix, _ in found), found
    assert found[0][1].startswith("object 2: area ") and "its mask has" in found[0][1]
    assert found[1][1].startswith("object 2: visible ")  # no longer area / full_area
    x, y, w, h = tight_box(disc(25, 26, 4))
    assert damaged(box) == [("json", f"object 3: box {[x, y, w + 1, h]} is not the tight box of its mask {[x, y, w, h]}")]
    assert any(p.startswith("object 1: full_box ") for _, p in damaged(full_box))
    found = damaged(rle)
    assert any(p.startswith("object 3: mask RLE differs from instances.png == 3 in ") for _, p in found), found
    assert any(p.startswith("object 3: area ") for _, p in found)
    assert any("visible pixel(s) outside its full mask" in p for _, p in found)
    found = damaged(instance)
    assert ("instances.png", "1 pixel(s) disagree with mask.png (it must be 255 exactly where an id > 0)") in found
    assert any(p.startswith("object 2: mask RLE differs from instances.png == 2 in 1 pixel(s)") for _, p in found)


def test_ids_beyond_the_objects_a_bad_rle_and_missing_keys_are_problems():
    def extra_id(ann, ids, mask):
        ids[31, 31], mask[31, 31] = 7, 255
        ann["mask_area"] += 1

    def garbage(ann, ids, mask):
        ann["objects"][0]["full_mask"] = {"size": [S, S], "counts": "zz"}

    def lacking(ann, ids, mask):
        del ann["objects"][1]["full_box"], ann["objects"][1]["hidden_by"]
        ann["objects"][2]["category"] = 9

    assert ("instances.png", "holds id 7, the json has 3 object(s)") in damaged(extra_id)
    assert any(p.startswith("object 1: full_mask RLE does not decode") for _, p in damaged(garbage))
    found = damaged(lacking)
    assert ("json", "object 2: lacks full_box, hidden_by") in found
    assert ("json", "object 3: category 9 is not one of dataset.json's 2") in found


# ---------------------------------------------------------------- counts


def test_counts_of_several_and_single_object_annotations_merge_exactly():
    ann, _, _ = sample()
    ann["dropped"] = 2
    single = {"key": "b000_f001_0_00", "fg": 1, "visible": 0.25}
    a = count_objects([ann, ann], fg_categories=[1, 2])
    b = count_objects([single], fg_categories=[1, 2])
    total = a + b
    assert (total.images, total.instances, total.dropped, total.hidden_by_objects) == (3, 7, 4, 2)
    assert total.per_image == {1: 1, 3: 2} and total.per_category == {1: 4, 2: 3}
    assert total.visible[visible_bin(0.25)] == 1 and visible_bin(0.25) == 2 and visible_bin(1.0) == 10
    summary = total.summary(["animals", "people"])
    assert summary["categories"] == [{"id": 1, "name": "animals", "instances": 4, "extra": 2}, {"id": 2, "name": "people", "instances": 3, "extra": 2}]
    assert total.extra_per_category == {1: 2, 2: 2}  # objects 2 and 3 of each several-object annotation
    assert total.summary(["animals", "people"], cutouts=[5, 1])["categories"][1] == {"id": 2, "name": "people", "instances": 3, "extra": 2, "cutouts": 1}
    assert summary["per_image"] == {"1": 1, "3": 2} and sum(summary["visible"]["instances"]) == 7
    assert len(summary["visible"]["bins"]) == 11 and summary["visible"]["bins"][-1] == "1"
    assert ObjectCounts() + total == total


# ---------------------------------------------------------------- pictures


def test_instances_are_tinted_outlined_boxed_and_named_in_their_colours():
    ann, ids, _ = sample()
    rgb = np.full((S, S, 3), 100, np.uint8)
    factor = display_scale(S)
    assert factor == 6  # 32 px shown at 192
    labels = [(o["id"], o["box"], "cat") for o in ann["objects"]]
    img = draw_instances(rgb, ids, labels, factor)
    assert img.shape == (S * factor, S * factor, 3)
    # inside object 3, away from its outline and box: the composite blended with its colour
    inside = np.rint(100 * (1 - FILL_ALPHA) + PALETTE[2] * FILL_ALPHA)
    np.testing.assert_array_equal(img[26 * factor + 2, 25 * factor + 2], inside)
    # its box's left edge is drawn in its colour (rows below the label)
    x, y, w, h = ann["objects"][2]["box"]
    column = img[(y + 2) * factor : (y + h) * factor - 2, x * factor]
    assert (column == colour(3)).all(axis=1).all()
    # its name sits on a label of its colour above the box, with dark ink on that light yellow
    above = img[y * factor - 9 : y * factor - 1, x * factor : x * factor + 14].reshape(-1, 3)
    assert (above == colour(3)).all(axis=1).mean() > 0.4 and (above.sum(axis=1) < 150).any()
    # the background stays as it was, far from every object
    np.testing.assert_array_equal(img[1 * factor, 30 * factor], rgb[1, 30])


def test_hidden_parts_are_striped_in_the_colour_of_the_hidden_object():
    ann, ids, _ = sample()
    full = {o["id"]: rle_decode(o["full_mask"]) for o in ann["objects"]}
    img = draw_hidden(np.zeros((S, S, 3), np.uint8), ids, full, factor=2)
    hidden = np.repeat(np.repeat(full[2] & (ids == 1), 2, 0), 2, 1)  # object 2's pixels that object 1 hides
    shown = img[hidden & ~np.repeat(np.repeat(edges(full[1].astype(np.uint8)), 2, 0), 2, 1)]
    painted = (shown == colour(2)).all(axis=1).mean()
    assert 0.3 < painted < 0.7  # stripes: about half the hidden pixels
    alone = np.repeat(np.repeat(full[3] & ~edges(full[3].astype(np.uint8)), 2, 0), 2, 1)
    assert not (img[alone] == colour(3)).all(axis=1).any()  # nothing of object 3 is hidden: no stripes


def test_edges_are_the_pixels_next_to_another_label():
    labels = np.zeros((5, 5), np.uint8)
    labels[1:4, 1:4] = 1
    assert edges(labels).sum() == 8 and not edges(labels)[2, 2]


def test_bar_chart_bars_are_in_proportion():
    img = bar_chart("objects", ["2", "3", "4"], [40, 20, 0], width=300, height=200)
    assert img.shape == (200, 300, 3)
    heights = []
    for centre in (10 + 280 / 6, 10 + 280 / 2):
        column = img[:, int(centre)]
        heights.append(int((column == (70, 130, 180)).all(axis=1).sum()))
    assert abs(heights[0] - 2 * heights[1]) <= 2 and heights[1] > 30
    assert not (img[:, int(10 + 280 * 5 / 6)] == (70, 130, 180)).all(axis=1).any()  # a count of 0: no bar


def test_the_recorded_order_must_put_every_hider_in_front():
    """Layout 2 records each object's place from the front (`order`, 1 = nearest); verify reads it
    against hidden_by. Object 1 hides object 2 in sample(); recording 2 as the nearer is a problem."""
    def with_orders(orders):
        def change(ann, ids, mask):
            for obj, order in zip(ann["objects"], orders):
                obj["order"] = order
        return damaged(change)

    assert with_orders([1, 2, 3]) == [] and with_orders([1, 3, 2]) == []  # object 3 hides nothing and is hidden by nothing
    assert with_orders([2, 1, 3]) == [("json", "object 2: hidden_by 1, but object 1's order 2 is not nearer than its 1")]
    assert with_orders([1, 1, 2]) == [("json", "orders [1, 1, 2] are not 1..3")]
    assert damaged(lambda ann, ids, mask: None) == []  # a store made before `order`: nothing to check
