"""The objects of samples' annotations, as inspected: the checks `fgbg verify` runs on one sample, and the counts of `fgbg stats`.

Pure functions on arrays and annotations (the json member's dict, a manifest line); masks are
read from their RLE by :mod:`fgbg.masks`:

- :func:`check_objects` lists what disagrees between a sample's ``json`` objects, its
  ``instances.png`` and its union ``mask.png``, as (member suffix, problem) pairs.
- :class:`ObjectCounts` counts objects per image, instances per category (all of them, and the
  extra objects, 2nd on, which ``--balance`` draws), visible fractions and dropped objects;
  counts of parts add up exactly.

An annotation of a single-object store (no ``objects``) is one object: its fg's category, the
``visible`` fraction if recorded (1 otherwise), nothing dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from fgbg.masks import box, rle_decode

VISIBLE_BINS = 10  # visible fractions in [0, 0.1), ..., [0.9, 1), and a last bin for exactly 1
VISIBLE_TOLERANCE = 1e-5  # `visible` is written rounded to 6 digits
OBJECT_KEYS = ("id", "category", "box", "full_box", "area", "full_area", "visible", "hidden_by", "mask", "full_mask")


# ---------------------------------------------------------------- verify: one sample


Problem = tuple[str, str]  # (member suffix, what is wrong)


def check_objects(ann: dict, ids: np.ndarray, mask: np.ndarray, n_categories: int | None = None) -> list[Problem]:
    """What disagrees in one several-object sample; an empty list when all agree.

    Checks that ``mask.png`` is 255 exactly where ``instances.png`` has an id, that ids are
    1..K for the K objects of the json, and per object: its visible mask (RLE) is where the
    ids equal its id, areas equal pixel counts, ``box`` is the tight box of the visible mask
    and ``full_box`` of the full mask, the visible mask lies inside the full mask, ``visible``
    is area / full_area and ``hidden_by`` what the ids show on its full mask instead of it; and that
    each object's recorded ``order`` puts whatever hides it in front of it.

    Args:
        ann: the sample's json annotation (with ``objects``).
        ids: uint8/uint16 (S, S), the decoded instances.png.
        mask: uint8 (S, S), the decoded mask.png (0/255).
        n_categories: how many categories dataset.json names (None: not checked).

    Returns:
        [(suffix, problem)]: ``"json"`` for the annotation, ``"instances.png"`` for the id map.
    """
    objects = ann.get("objects")
    if not isinstance(objects, list) or not objects:
        return [("json", "no `objects` list (a store with several objects per composite has one per sample)")]
    problems: list[Problem] = []
    union = ids > 0
    wrong = int(np.count_nonzero(union != (mask > 0)))
    if wrong:
        problems.append(("instances.png", f"{wrong} pixel(s) disagree with mask.png (it must be 255 exactly where an id > 0)"))
    top = int(ids.max()) if ids.size else 0
    if top > len(objects):
        problems.append(("instances.png", f"holds id {top}, the json has {len(objects)} object(s)"))
    if ann.get("mask_area") != int(np.count_nonzero(mask > 0)):
        problems.append(("json", f"mask_area {ann.get('mask_area')}, mask.png has {int(np.count_nonzero(mask > 0))} pixel(s)"))
    dropped = ann.get("dropped", 0)
    if not isinstance(dropped, int) or dropped < 0:
        problems.append(("json", f"dropped {dropped!r} is not a count"))
    for n, obj in enumerate(objects, 1):
        problems += [("json", f"object {n}: {p}") for p in _check_object(n, obj, ids, n_categories)]
    return problems + [("json", p) for p in _check_order(objects)]


def _check_order(objects: list) -> list[str]:
    """Problems of the objects' recorded depth order (``order``: 1 = nearest; stores of layout 2 on):
    the orders are 1..K, and every object that hides another (its id in ``hidden_by``) is nearer."""
    orders = [o.get("order") if isinstance(o, dict) else None for o in objects]
    if all(v is None for v in orders):
        return []  # made before the order was recorded
    if not all(isinstance(v, int) for v in orders) or sorted(orders) != list(range(1, len(objects) + 1)):
        return [f"orders {orders} are not 1..{len(objects)}"]
    return [
        f"object {n}: hidden_by {h}, but object {h}'s order {orders[h - 1]} is not nearer than its {orders[n - 1]}"
        for n, obj in enumerate(objects, 1)
        for h in obj.get("hidden_by", [])
        if isinstance(h, int) and 0 < h <= len(objects) and orders[h - 1] >= orders[n - 1]
    ]


def _check_object(n: int, obj: dict, ids: np.ndarray, n_categories: int | None) -> list[str]:
    """Problems of the n-th object (1-based) of a sample against its id map (see :func:`check_objects`)."""
    if not isinstance(obj, dict):
        return ["not an object"]
    missing = [k for k in OBJECT_KEYS if k not in obj]
    if missing:
        return [f"lacks {', '.join(missing)}"]
    problems = []
    if obj["id"] != n:
        problems.append(f"id {obj['id']!r}, expected {n} (ids follow the list's order)")
    if n_categories is not None and obj["category"] not in range(1, n_categories + 1):
        problems.append(f"category {obj['category']!r} is not one of dataset.json's {n_categories}")
    masks = {}
    for name in ("mask", "full_mask"):
        try:
            masks[name] = rle_decode(obj[name])
        except ValueError as e:
            problems.append(f"{name} RLE does not decode ({e})")
            continue
        if masks[name].shape != ids.shape:
            problems.append(f"{name} RLE is {masks[name].shape[0]}x{masks[name].shape[1]}, the image {ids.shape[0]}x{ids.shape[1]}")
            del masks[name]
    if "mask" in masks:
        seen = masks["mask"]
        wrong = int(np.count_nonzero(seen != (ids == n)))
        if wrong:
            problems.append(f"mask RLE differs from instances.png == {n} in {wrong} pixel(s)")
        problems += _area_and_box(obj, seen, "area", "box", "mask")
    if "full_mask" in masks:
        full = masks["full_mask"]
        problems += _area_and_box(obj, full, "full_area", "full_box", "full mask")
        outside = int(np.count_nonzero(masks["mask"] & ~full)) if "mask" in masks else 0
        if outside:
            problems.append(f"{outside} visible pixel(s) outside its full mask")
        hiding = sorted(int(v) for v in np.unique(ids[full]) if v != n)
        if obj["hidden_by"] != hiding:
            problems.append(f"hidden_by {obj['hidden_by']}, the ids on its full mask say {hiding}")
    if isinstance(obj["area"], int) and isinstance(obj["full_area"], int):
        fraction = obj["area"] / obj["full_area"] if obj["full_area"] else 1.0
        if not isinstance(obj["visible"], (int, float)) or abs(obj["visible"] - fraction) > VISIBLE_TOLERANCE:
            problems.append(f"visible {obj['visible']!r}, area / full_area is {fraction:.6f}")
    return problems


def _area_and_box(obj: dict, pixels: np.ndarray, area_key: str, box_key: str, what: str) -> list[str]:
    problems = []
    count = int(np.count_nonzero(pixels))
    if obj[area_key] != count:
        problems.append(f"{area_key} {obj[area_key]!r}, its {what} has {count} pixel(s)")
    tight = box(pixels)
    if obj[box_key] != tight:
        problems.append(f"{box_key} {obj[box_key]!r} is not the tight box of its {what} {tight}")
    return problems


# ---------------------------------------------------------------- counting


def sample_objects(ann: dict, fg_categories: list[int]) -> list[dict]:
    """The objects of one annotation: its ``objects``, or (single-object stores) the one fg as an
    object with its category and ``visible`` fraction."""
    if "objects" in ann:
        return ann["objects"]
    return [{"id": 1, "category": fg_categories[ann["fg"]], "visible": ann.get("visible", 1.0), "hidden_by": []}]


def visible_bin(fraction: float) -> int:
    """The histogram bin of a visible fraction: 0..9 for [0.1 b, 0.1 (b + 1)), 10 for exactly 1."""
    if fraction >= 1.0:
        return VISIBLE_BINS
    return min(int(fraction * VISIBLE_BINS), VISIBLE_BINS - 1)


def visible_bin_labels() -> list[str]:
    """Labels of the visible-fraction bins: "0-.1", ..., ".9-1", "1"."""
    edges = ["0"] + [f".{i}" for i in range(1, VISIBLE_BINS)] + ["1"]
    return [f"{edges[b]}-{edges[b + 1]}" for b in range(VISIBLE_BINS)] + ["1"]


@dataclass
class ObjectCounts:
    """Objects of a set of samples; ``a + b`` merges two parts exactly."""

    images: int = 0
    per_image: dict[int, int] = field(default_factory=dict)  # objects in a composite -> composites
    per_category: dict[int, int] = field(default_factory=dict)  # category id -> instances
    visible: list[int] = field(default_factory=lambda: [0] * (VISIBLE_BINS + 1))  # instances per visible bin
    hidden_by_objects: int = 0  # instances partly hidden by another object
    dropped: int = 0  # extra objects drawn but never pasted
    extra_per_category: dict[int, int] = field(default_factory=dict)  # category id -> extra objects (2nd on: drawn, not planned)

    def add(self, ann: dict, fg_categories: list[int]) -> None:
        """Count one sample's annotation (json member or manifest line)."""
        objects = sample_objects(ann, fg_categories)
        self.images += 1
        self.per_image[len(objects)] = self.per_image.get(len(objects), 0) + 1
        for n, obj in enumerate(objects):
            self.per_category[obj["category"]] = self.per_category.get(obj["category"], 0) + 1
            if n:  # object 1 is the key's fg (the plan's); the others were drawn by --balance's rule
                self.extra_per_category[obj["category"]] = self.extra_per_category.get(obj["category"], 0) + 1
            self.visible[visible_bin(obj.get("visible", 1.0))] += 1
            self.hidden_by_objects += any(i != 0 for i in obj.get("hidden_by", []))
        self.dropped += int(ann.get("dropped", 0))

    @property
    def instances(self) -> int:
        return sum(self.per_category.values())

    def __add__(self, other: "ObjectCounts") -> "ObjectCounts":
        def plus(a: dict, b: dict) -> dict:
            return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}

        return ObjectCounts(
            self.images + other.images,
            plus(self.per_image, other.per_image),
            plus(self.per_category, other.per_category),
            [a + b for a, b in zip(self.visible, other.visible)],
            self.hidden_by_objects + other.hidden_by_objects,
            self.dropped + other.dropped,
            plus(self.extra_per_category, other.extra_per_category),
        )

    def summary(self, names: list[str], cutouts: list[int] | None = None) -> dict:
        """stats.json's ``objects`` entry; ``names[i]`` is category i + 1's name and ``cutouts[i]`` (if
        given) how many of the store's foregrounds it holds. Per category: ``instances`` (every object),
        ``extra`` (objects 2nd on, whose category ``--balance categories`` evens out) and ``cutouts``."""
        return {
            "images": self.images,
            "instances": self.instances,
            "per_image": {str(k): self.per_image[k] for k in sorted(self.per_image)},
            "categories": [
                {"id": i, "name": name, "instances": self.per_category.get(i, 0), "extra": self.extra_per_category.get(i, 0),
                 **({"cutouts": cutouts[i - 1]} if cutouts is not None else {})}
                for i, name in enumerate(names, 1)
            ],  # fmt: skip
            "visible": {"bins": visible_bin_labels(), "instances": list(self.visible)},
            "hidden_by_objects": self.hidden_by_objects,
            "dropped": self.dropped,
        }


def count_objects(anns: Iterable[dict], fg_categories: list[int]) -> ObjectCounts:
    """:class:`ObjectCounts` of annotations (json members or manifest lines), streamed."""
    counts = ObjectCounts()
    for ann in anns:
        counts.add(ann, fg_categories)
    return counts
