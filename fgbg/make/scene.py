"""A composite of several objects (``generate --objects``): drawing them, their id map, the
composite, its depth map and its members.

Object 1 is the key's fg, placed as a single fg is (:meth:`Renderer.first_object`); the sample's
own generator then draws how many more and each one's fg, flip and placements. Who is seen where
follows :mod:`fgbg.make.occlusion`; the renderer (:mod:`fgbg.make.render`) holds the decoded
assets, the sprites and the members' encoding that one object and several share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fgbg.make.compose import VISIBLE_TRIES, blend_into, hide, sample_rng
from fgbg.make.occlusion import IdMap, front_ranks, id_dtype, instance_ids, object_geometry, painting_order
from fgbg.masks import id_masks
from fgbg.store.plan import SampleRef

if TYPE_CHECKING:
    from fgbg.make.render import Candidate, Renderer


class Scene(NamedTuple):
    """A composite of several objects (:func:`compose_scene`)."""

    fg_bg: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # uint8 (H, W) in {0, 255}: the union of the visible objects
    objects: list["Candidate"]  # object i + 1 at index i; object 1 is the key's fg
    ids: np.ndarray  # uint8/uint16 (H, W): 0 = bg, i = object i, where it is seen
    dropped: int  # extra objects drawn but not pasted

    @property
    def first_mask(self) -> np.ndarray:
        """uint8 (H, W) in {0, 255}: where the key's fg is seen."""
        return np.where(self.ids == 1, np.uint8(255), np.uint8(0))


def compose_scene(r: "Renderer", ref: SampleRef) -> Scene:
    """The sample's objects (:func:`draw_objects`) composed by depth."""
    return compose_objects(r, ref.bg, *draw_objects(r, ref))


def draw_objects(r: "Renderer", ref: SampleRef) -> tuple[list["Candidate"], np.ndarray, int]:
    """The key's fg (object 1) and the extra objects the sample's generator draws; their id map; how many were dropped.

    After object 1 (drawn as a single fg is), the generator draws the number of objects in
    [objects_min, objects_max], then each extra object's fg (one not yet in the composite while
    the set allows), flip and placements: a placement is kept when every object, the new one
    included, still meets the bars (``min_visible``, ``min_area``; an object already below them
    keeps what it has); an extra without such a placement in VISIBLE_TRIES draws is dropped.
    """
    rng = sample_rng(r.config.seed, ref.key)
    first = r.first_object(ref, rng)
    scene = IdMap(r.config.frame, id_dtype(r.config.objects_max))
    scene.add(first.layer, first.layer.mask)
    objects, dropped = [first], 0
    for _ in range(int(rng.integers(r.config.objects_min, r.config.objects_max + 1)) - 1):
        extra = extra_object(r, ref.bg, objects, scene, rng)
        if extra is None:
            dropped += 1
        else:
            objects.append(extra)
    return objects, scene.ids, dropped


def extra_object(r: "Renderer", bg: int, objects: list["Candidate"], scene: IdMap, rng: np.random.Generator) -> "Candidate | None":
    """One more object drawn from ``rng`` that keeps every object at its bars, added to ``scene``; or None (dropped).

    Draws are tested on their masks alone: only the kept one's colours are resized."""
    c = r.config
    fg = pick_fg(rng, {o.fg for o in objects}, len(r.fg))
    flip = int(rng.integers(2)) if c.flip else 0
    areas = scene.areas
    full = np.array([o.sprite.pixels for o in objects])
    # what each object must keep: the bars, or what it has if already below them
    keep_area, keep_seen = np.minimum(areas, c.min_area), np.minimum(areas / np.maximum(full, 1), c.min_visible)
    for _ in range(VISIBLE_TRIES):
        o = r.candidate(bg, fg, flip, r.draw(bg, fg, rng))
        wins = scene.wins(o.layer)
        after = scene.areas_with(o.layer, wins)
        seen = after / np.maximum(np.append(full, o.sprite.pixels), 1)
        if (
            after[-1] > 0 and after[-1] >= c.min_area and seen[-1] >= c.min_visible
            and (after[:-1] >= keep_area).all() and (seen[:-1] >= keep_seen).all()
        ):  # fmt: skip
            scene.add(o.layer, wins, after)
            return o
    return None


def pick_fg(rng: np.random.Generator, used: set[int], count: int) -> int:
    """One of ``count`` fgs drawn uniformly among those not yet in the composite (among all once every one is)."""
    unused = [f for f in range(count) if f not in used]
    pool = unused or range(count)
    return int(pool[int(rng.integers(len(pool)))])


def compose_objects(r: "Renderer", bg: int, objects: list["Candidate"], ids: np.ndarray | None = None, dropped: int = 0) -> Scene:
    """``objects`` pasted on bg ``bg``, from the farthest to the nearest (nearer colours over farther ones).

    ``ids``: their id map, if known (else made from their layers, :func:`instance_ids`)."""
    if ids is None:
        ids = instance_ids(r.config.frame, [o.layer for o in objects], id_dtype(r.config.objects_max))
    fg_bg = r.bg[bg].copy()
    for i in painting_order([o.value for o in objects]):
        o = objects[i]
        premultiplied, inverse_alpha, _ = hide(*o.sprite.colour(), o.mask, o.hidden)
        blend_into(fg_bg, premultiplied, inverse_alpha, o.p.x, o.p.y)
    return Scene(fg_bg, np.where(ids > 0, np.uint8(255), np.uint8(0)), objects, ids, dropped)


def layered_scene(r: "Renderer", ref: SampleRef, scene: Scene) -> tuple[np.ndarray, int]:
    """Quantised depth of the nearest surface (each object's visible pixels take its foot's value), and object 1's value."""
    bg_depth = r.bg_depth_q[ref.bg]
    depth = bg_depth.copy()
    for i, o in enumerate(scene.objects, start=1):
        box = (slice(o.p.y, o.p.y + o.p.h), slice(o.p.x, o.p.x + o.p.w))  # an object is seen only inside its box
        depth[box][scene.ids[box] == i] = bg_depth[o.p.foot[1], o.p.foot[0]]
    first = scene.objects[0].p.foot
    return depth, int(bg_depth[first[1], first[0]])


def encode_scene(r: "Renderer", ref: SampleRef, scene: Scene, depth: np.ndarray, fg_value: int) -> dict[str, bytes]:
    """The members of a several-object sample: a single sample's, ``instances.png`` and ``objects`` in the json
    (see :mod:`fgbg.make.occlusion`); the top-level fields describe object 1, ``mask_area`` the union.

    Each object's ``order`` is its place from the front (1 = the nearest, :func:`front_ranks`): what
    decided who hides whom, where ``depth``, rounded to --depth-bits, may tie."""
    first = scene.objects[0]
    annotation = r.annotation(ref, first.p, scene.mask, fg_value)
    top = (1 << r.config.depth_bits) - 1
    ranks = front_ranks([o.value for o in scene.objects])
    seen = id_masks(scene.ids, len(scene.objects))
    objects = []
    for i, o in enumerate(scene.objects, start=1):
        fx, fy = o.p.foot
        geometry = object_geometry(scene.ids, i, o.p.x, o.p.y, o.sprite.shown, o.sprite.box, o.sprite.pixels,
                                   (seen.rles[i - 1], seen.boxes[i - 1].tolist(), int(seen.areas[i - 1])))  # fmt: skip
        objects.append({
            "id": i, "fg": o.fg, "fg_file": r.fg_files[o.fg], "category": r.fg_categories[o.fg],
            "flip": o.flip, "scale": round(o.p.scale, 6), "foot": [fx, fy],
            "depth": round(int(r.bg_depth_q[ref.bg][fy, fx]) / top, 6), "order": ranks[i - 1], **geometry,
        })  # fmt: skip
    annotation.update(visible=objects[0]["visible"], objects=objects, dropped=scene.dropped)
    return r.members(scene.fg_bg, scene.mask, depth, annotation, scene.ids)
