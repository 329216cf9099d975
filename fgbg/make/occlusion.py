"""Occlusion among several objects in one composite: who is seen where (the id map), the order of
the layers, and what each object's annotation says of its pixels. Pure numpy.

Every object is a flat layer at the inverse depth found at its foot (near = larger). At each
pixel the nearest surface is seen: the nearest object whose mask covers the pixel, unless the
bg (where it has real depth) is nearer, which the caller has already cut out of that object's
mask. Ties go to the lower id (the key's fg, object 1, is in front of its equals). One id map
(0 = bg, i = object i) then gives every visible mask, the union mask and the depth map, so the
three always agree.

Shapes: (H, W) is the composite's frame (height, width); an object's mask is bool (h, w) with its
top-left at (x, y), inside the (H, W) frame.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fgbg.masks import box, rle_encode

BACKGROUND = 0  # the id of the bg in the id map and in an object's ``hidden_by``


class Layer(NamedTuple):
    """An object's pixels that the bg does not hide, and its inverse depth (near = 1)."""

    x: int
    y: int
    mask: np.ndarray  # bool (h, w): alpha >= 128, less where the bg is nearer
    value: float


def id_dtype(most: int) -> type:
    """uint8 ids for up to 255 objects, uint16 above."""
    return np.uint8 if most <= 255 else np.uint16


def instance_ids(frame: tuple[int, int], layers: list[Layer], dtype=np.uint8) -> np.ndarray:
    """(H, W) ids of the nearest layer at every pixel: 0 where none covers it, i for ``layers[i - 1]``
    (equals: the lower id).

    >>> a = Layer(0, 0, np.ones((2, 2), bool), 0.5)
    >>> b = Layer(1, 0, np.ones((2, 2), bool), 0.8)  # nearer: hides a where they overlap
    >>> instance_ids((3, 3), [a, b]).tolist()
    [[1, 2, 2], [1, 2, 2], [0, 0, 0]]
    """
    scene = IdMap(frame, dtype)
    for layer in layers:
        scene.add(layer, scene.wins(layer))
    return scene.ids


class IdMap:
    """The id map of a composite built one object at a time, with each object's visible area.

    An object added later has a higher id, so it is seen only where it is strictly nearer than
    what is there: the same map as painting all layers from far to near, equals by id.
    """

    def __init__(self, frame: tuple[int, int], dtype=np.uint8) -> None:
        self.ids = np.zeros(frame, dtype)  # (H, W): 0 = bg, i = object i
        self.values = np.array([-np.inf])  # inverse depth of the surface behind each id (the bg's is never in front)
        self.areas = np.zeros(0, np.int64)  # visible pixels of object i at index i - 1

    def wins(self, layer: Layer) -> np.ndarray:
        """bool (h, w): where ``layer``, added now, would be seen (within its box)."""
        h, w = layer.mask.shape
        region = self.ids[layer.y : layer.y + h, layer.x : layer.x + w]
        return layer.mask & (self.values < layer.value).take(region)

    def areas_with(self, layer: Layer, wins: np.ndarray) -> np.ndarray:
        """int64 (count + 1,): every object's visible pixels if ``layer`` were added where it ``wins``
        (each object loses the pixels of it that the layer wins)."""
        h, w = layer.mask.shape
        region = self.ids[layer.y : layer.y + h, layer.x : layer.x + w]
        lost = np.bincount(region[wins], minlength=len(self.values))[1:]
        return np.append(self.areas - lost, np.count_nonzero(wins))

    def add(self, layer: Layer, wins: np.ndarray, areas: np.ndarray | None = None) -> None:
        """Add ``layer`` as the next object, seen where it ``wins`` (``areas``: :meth:`areas_with`'s, if known)."""
        self.areas = self.areas_with(layer, wins) if areas is None else areas
        h, w = layer.mask.shape
        self.ids[layer.y : layer.y + h, layer.x : layer.x + w][wins] = len(self.values)
        self.values = np.append(self.values, layer.value)


def painting_order(values: list[float]) -> list[int]:
    """Indices from the farthest layer to the nearest; among equal inverse depths the lower index last."""
    return sorted(range(len(values)), key=lambda i: (values[i], -i))


def front_ranks(values: list[float]) -> list[int]:
    """Each layer's place counted from the front (1 = the nearest), the order the id map follows:
    by inverse depth at full precision, equals by the lower index first.

    >>> front_ranks([0.5, 0.8, 0.5])
    [2, 1, 3]
    """
    ranks = [0] * len(values)
    for place, i in enumerate(reversed(painting_order(values)), start=1):
        ranks[i] = place
    return ranks


def object_geometry(ids: np.ndarray, own: int, x: int, y: int, mask: np.ndarray, tight: list[int], pixels: int, seen: tuple[dict, list[int], int]) -> dict:
    """What the annotation says of one object's pixels: visible and full boxes, areas, fractions,
    what hides it (sorted ids, 0 = the bg), and both masks as COCO RLE.

    Args:
        ids: (H, W) id map (:func:`instance_ids`).
        own: the object's id.
        x, y, mask: its whole mask (bool (h, w), hidden pixels included) with its top-left at (x, y),
            possibly reaching out of the frame.
        tight, pixels: ``box(mask)`` and its pixel count.
        seen: the RLE, box and area of ``ids == own`` (:func:`fgbg.masks.id_masks`).
    """
    height, width = ids.shape
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    inside = (x0, y0, x1, y1) == (x, y, x + w, y + h)
    full = mask if inside else mask[y0 - y : y1 - y, x0 - x : x1 - x]  # the part in the frame
    full_area = pixels if inside else int(np.count_nonzero(full))
    full_box = [x + tight[0], y + tight[1], *tight[2:]] if inside and tight[2] else box(full, x0, y0)
    rle, visible_box, area = seen
    geometry = {"box": full_box, "full_box": full_box, "area": area, "full_area": full_area,
                "visible": round(area / full_area, 6) if full_area else 1.0,
                "in_frame": round(full_area / pixels, 6) if pixels else 1.0,
                "hidden_by": [], "mask": rle, "full_mask": rle}  # fmt: skip
    if area < full_area:  # something hides part of it (what is seen is always part of its mask)
        behind = np.bincount(ids[y0:y1, x0:x1][full], minlength=own + 1)  # what is seen where it is
        behind[own] = 0
        geometry.update(box=list(visible_box), hidden_by=np.flatnonzero(behind).tolist(), full_mask=rle_encode(full, ids.shape, x0, y0))
    return geometry


def without_masks(annotation: dict) -> dict:
    """A several-object annotation without its objects' RLE masks: the sample's manifest line."""
    objects = [{k: v for k, v in o.items() if k not in ("mask", "full_mask")} for o in annotation["objects"]]
    return {**annotation, "objects": objects}
