"""The objects (instances) of one sample, as every export sees them: pure functions of its annotation.

A several-object sample's json lists its ``objects`` (visible and full masks as COCO RLE,
boxes, areas, fractions: see the store format). A single-object sample has one object,
whose visible mask is ``mask.png``; on a bg with real depth (its json has ``visible``) something
nearer may have hidden part of it, and its full mask is the placed fg's own, from the store's
prepared fg by the function the renderer pastes with (:func:`fgbg.make.sprites.placed_mask`).
Either way an export gets a list of :class:`Instance`, in id order.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from fgbg.make.compose import paste_mask
from fgbg.make.sprites import placed_mask
from fgbg.masks import box as mask_box, rle_encode as encode_rle

Rle = dict  # {"size": [H, W], "counts": str}: COCO compressed RLE, counts a str


class Instance(NamedTuple):
    """One object of a sample: its class, visible and full masks, boxes and fractions."""

    id: int  # 1-based, the object's value in instances.png
    category: int  # category id, 1-based (dataset.json "categories")
    mask: Rle  # visible mask
    box: tuple[int, int, int, int]  # visible box (x, y, w, h) to pixel edges; (0, 0, 0, 0) when nothing is seen
    area: int  # visible pixels
    full_mask: Rle  # the whole object, hidden parts too, in frame (amodal)
    full_box: tuple[int, int, int, int]
    visible: float  # area / full area (1.0 for an empty full mask)
    in_frame: float  # in-frame share of the whole object


def several_instances(annotation: dict) -> list[Instance]:
    """The objects of a several-object sample's annotation (its json, with ``objects``), in id order."""
    return [
        Instance(o["id"], o["category"], o["mask"], tuple(o["box"]), o["area"], o["full_mask"], tuple(o["full_box"]),
                 o["visible"], o["in_frame"])  # fmt: skip
        for o in annotation["objects"]
    ]


def single_instance(annotation: dict, mask: np.ndarray, category: int, full_mask: Callable[[], np.ndarray]) -> Instance:
    """The one object of a single-object sample.

    Args:
        annotation: the sample's json (``visible`` present only on bgs with real depth).
        mask: uint8 (S, S), nonzero = the visible fg (mask.png).
        category: the category id of the sample's fg.
        full_mask: gives the placed fg's whole mask, uint8 (S, S); called only on bgs with real
            depth, where something may hide part of it. Whether anything is hidden is decided by
            pixel counts (the json's ``visible`` is rounded).
    """
    seen = mask > 0
    rle, box = encode_rle(seen), tuple(mask_box(seen))
    area = int(np.count_nonzero(seen))
    full = full_mask() > 0 if "visible" in annotation else seen
    full_area = int(np.count_nonzero(full))
    if full_area == area:
        return Instance(1, category, rle, box, area, rle, box, 1.0, 1.0)  # placements keep the fg in frame
    visible = round(area / full_area, 6)
    return Instance(1, category, rle, box, area, encode_rle(full), tuple(mask_box(full)), visible, 1.0)


def placed_fg_mask(fg_rgba: np.ndarray, annotation: dict, frame: tuple[int, int]) -> np.ndarray:
    """The whole mask of a single-object sample's fg as it was pasted, hidden parts too: uint8 frame (H, W) in {0, 255}.

    The prepared fg (uint8 (h, w, 4), from ``assets/fg``) placed as the json says (``flip``,
    ``w``, ``h``, ``x``, ``y``), by the renderer's own :func:`placed_mask`.
    """
    a = annotation
    return paste_mask(placed_mask(fg_rgba, a["flip"], a["w"], a["h"]), a["x"], a["y"], frame)
