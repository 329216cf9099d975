"""A composite annotated object by object (``generate --objects``, and every store whose pasting
varies): drawing the objects, their id map, the composite, its depth map and its members.

Object 1 is the key's fg, placed as a single fg is (:meth:`Renderer.first_object`); the sample's
own generator then draws how many more and each one's fg, flip (angle) and placements, then the
distractors (``--distractors``: pasted like objects, in no mask), then how each is pasted (its
:class:`Look`: light, harmonisation, blend mode; the blend last, so that ``--blend-each`` siblings,
which share the generator, share everything else). Who is seen where follows
:mod:`fgbg.make.occlusion`; the renderer (:mod:`fgbg.make.render`) holds the decoded assets, the
sprites and the members' encoding that one object and several share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fgbg.make.compose import VISIBLE_TRIES, blend_into, depth_at, hide, sample_rng
from fgbg.make.occlusion import IdMap, front_ranks, id_dtype, instance_ids, object_geometry, painting_order
from fgbg.make.variety import blend, draw_blend_mode, draw_blend_params, draw_harmonize, draw_light, harmonize, jitter_light
from fgbg.masks import box, id_masks
from fgbg.store.plan import SampleRef

if TYPE_CHECKING:
    from fgbg.make.render import Candidate, Renderer


class Look(NamedTuple):
    """How one object or distractor is pasted (json-ready): blend mode and its parameters
    (:func:`fgbg.make.variety.draw_blend_params`), light factors (:func:`~fgbg.make.variety.draw_light`)
    and harmonisation fraction, None where the option is off."""

    blend: str
    blend_params: dict
    light: dict | None
    harmonize: float | None


class Scene(NamedTuple):
    """A composite annotated object by object (:func:`compose_scene`)."""

    fg_bg: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # uint8 (H, W) in {0, 255}: the union of the visible objects
    objects: list["Candidate"]  # object i + 1 at index i; object 1 is the key's fg
    ids: np.ndarray  # uint8/uint16 (H, W): 0 = bg (or a distractor), i = object i, where it is seen
    dropped: int  # extra objects drawn but not pasted
    distractors: tuple = ()  # Candidates pasted in no mask (--distractors)
    looks: tuple = ()  # a Look per object then per distractor, where pasting varies; () for today's paste
    surfaces: np.ndarray | None = None  # ids with distractor j at K + j (K objects): the nearest surface, for depth

    @property
    def first_mask(self) -> np.ndarray:
        """uint8 (H, W) in {0, 255}: where the key's fg is seen."""
        return np.where(self.ids == 1, np.uint8(255), np.uint8(0))


def compose_scene(r: "Renderer", ref: SampleRef) -> Scene:
    """The sample's objects (:func:`draw_objects`), distractors (:func:`draw_distractors`) and looks
    (:func:`draw_looks`) composed by depth."""
    rng = sample_rng(r.config.seed, ref.layout_key)
    objects, scene, dropped = draw_objects(r, ref, rng)
    distractors = draw_distractors(r, ref.bg, objects, scene, rng)
    pasted = objects + distractors
    looks = draw_looks(r, ref, pasted, rng) if r.config.varied or distractors else ()
    return compose_objects(r, ref.bg, objects, scene.ids, dropped, distractors, looks)


def draw_objects(r: "Renderer", ref: SampleRef, rng: np.random.Generator) -> tuple[list["Candidate"], IdMap, int]:
    """The key's fg (object 1) and the extra objects the sample's generator draws; their id map; how many were dropped.

    After object 1 (drawn as a single fg is), the generator draws the number of objects in
    [objects_min, objects_max], then each extra object's fg (one not yet in the composite while
    the set allows), flip and placements: a placement is kept when every object, the new one
    included, still meets the bars (``min_visible``, ``min_area``; an object already below them
    keeps what it has); an extra without such a placement in VISIBLE_TRIES draws is dropped.
    """
    c = r.config
    first = r.first_object(ref, rng)
    most = c.objects_max + (c.distractors_max if c.distractors else 0)
    scene = IdMap(r.config.frame, id_dtype(most))
    scene.add(first.layer, first.layer.mask)
    objects, dropped = [first], 0
    categories = r.fg_categories if c.balance == "categories" else None
    for _ in range(int(rng.integers(c.objects_min, c.objects_max + 1)) - 1):
        fg = pick_fg(rng, {o.fg for o in objects}, len(r.fg), categories)
        extra = extra_object(r, ref.bg, fg, objects, scene, rng)
        if extra is None:
            dropped += 1
        else:
            objects.append(extra)
    return objects, scene, dropped


def draw_distractors(r: "Renderer", bg: int, objects: list["Candidate"], scene: IdMap, rng: np.random.Generator) -> list["Candidate"]:
    """The distractors (``--distractors``) the sample's generator draws: how many, then each one's cut-out,
    flip and placements, kept as an extra object is (every object keeps its bars), added to ``scene``
    after the objects (ids K + 1...); a distractor without such a placement is left out."""
    if not r.config.distractors or not r.distractors:
        return []
    first = len(r.fg)  # the renderer's sprites hold the distractors after the fgs
    pasted: list["Candidate"] = []
    for _ in range(int(rng.integers(r.config.distractors_min, r.config.distractors_max + 1))):
        index = first + int(rng.integers(len(r.distractors)))
        o = extra_object(r, bg, index, objects + pasted, scene, rng)
        if o is not None:
            pasted.append(o)
    return pasted


def extra_object(r: "Renderer", bg: int, fg: int, objects: list["Candidate"], scene: IdMap, rng: np.random.Generator) -> "Candidate | None":
    """Fg ``fg`` drawn from ``rng`` (flip, angle, placements) where it keeps every object at its bars,
    added to ``scene``; or None (dropped).

    Draws are tested on their masks alone: only the kept one's colours are resized."""
    c = r.config
    flip = int(rng.integers(2)) if c.flip else 0
    angle = r.draw_angle(rng)
    areas = scene.areas
    full = np.array([o.framed for o in objects])
    # what each object must keep: the bars, or what it has if already below them
    keep_area, keep_seen = np.minimum(areas, c.min_area), np.minimum(areas / np.maximum(full, 1), c.min_visible)
    for _ in range(VISIBLE_TRIES):
        o = r.candidate(bg, fg, flip, r.draw(bg, fg, rng, flip, angle), angle)
        if not r.in_frame_enough(o):
            continue
        wins = scene.wins(o.layer)
        after = scene.areas_with(o.layer, wins)
        seen = after / np.maximum(np.append(full, o.framed), 1)
        if (
            after[-1] > 0 and after[-1] >= c.min_area and seen[-1] >= c.min_visible
            and (after[:-1] >= keep_area).all() and (seen[:-1] >= keep_seen).all()
        ):  # fmt: skip
            scene.add(o.layer, wins, after)
            return o
    return None


def pick_fg(rng: np.random.Generator, used: set[int], count: int, categories: list[int] | None = None) -> int:
    """One of ``count`` fgs drawn uniformly among those not yet in the composite (among all once every one is);
    with ``categories`` (each fg's, ``--balance categories``) a category first, uniformly among all of them,
    then an fg in it the same way."""
    candidates = list(range(count))
    if categories is not None:
        kinds = sorted(set(categories))
        kind = kinds[int(rng.integers(len(kinds)))]
        candidates = [f for f in candidates if categories[f] == kind]
    pool = [f for f in candidates if f not in used] or candidates
    return int(pool[int(rng.integers(len(pool)))])


def draw_looks(r: "Renderer", ref: SampleRef, pasted: list["Candidate"], rng: np.random.Generator) -> tuple[Look, ...]:
    """Each pasted thing's :class:`Look`: light and harmonisation for all of them first, then the blends
    (the mode is ``ref.mode`` for a --blend-each sample, else drawn from --blend), so that siblings
    of --blend-each, which draw from the same generator, differ in nothing else."""
    c = r.config
    lights = [draw_light(rng, c.light) if c.light > 0 else None for _ in pasted]
    fractions = [draw_harmonize(rng, c.harmonize) if c.harmonize > 0 else None for _ in pasted]
    modes = [ref.mode or (draw_blend_mode(rng, c.blend) if len(c.blend) > 1 else c.blend[0]) for _ in pasted]
    return tuple(Look(mode, draw_blend_params(mode, rng), light, fraction) for mode, light, fraction in zip(modes, lights, fractions))


def compose_objects(
    r: "Renderer", bg: int, objects: list["Candidate"], ids: np.ndarray | None = None, dropped: int = 0,
    distractors: list["Candidate"] = (), looks: tuple[Look, ...] = (),
) -> Scene:  # fmt: skip
    """``objects`` and ``distractors`` pasted on bg ``bg``, from the farthest to the nearest (nearer
    colours over farther ones), each as its look says (today's paste without looks).

    ``ids``: the id map of objects then distractors, if known (else made from their layers,
    :func:`instance_ids`); the scene's ``ids`` keep the objects' alone."""
    pasted = list(objects) + list(distractors)
    if ids is None:
        ids = instance_ids(r.config.frame, [o.layer for o in pasted], id_dtype(len(pasted)))
    fg_bg = r.bg[bg].copy()
    for i in painting_order([o.value for o in pasted]):
        o = pasted[i]
        if looks:
            fg_bg = paste_look(r.bg[bg], fg_bg, o, looks[i])
        else:
            premultiplied, inverse_alpha, _ = hide(*o.sprite.colour(), o.mask, o.hidden)
            blend_into(fg_bg, premultiplied, inverse_alpha, o.p.x, o.p.y)
    surfaces = ids
    if distractors:  # the objects' ids alone, in the type the store's readers expect of its objects
        ids = np.where(ids > len(objects), 0, ids).astype(id_dtype(r.config.objects_max))
    mask = np.where(ids > 0, np.uint8(255), np.uint8(0))
    return Scene(fg_bg, mask, list(objects), ids, dropped, tuple(distractors), tuple(looks), surfaces)


def paste_look(bg_rgb: np.ndarray, fg_bg: np.ndarray, o: "Candidate", look: Look) -> np.ndarray:
    """``o`` pasted onto ``fg_bg`` as ``look`` says: re-lit, harmonised toward the bg under its box
    (the bg photo's own pixels, not the objects already pasted), hidden parts transparent, then blended.
    Colours only: its mask stays its sprite's alpha >= 128. Returns the new composite."""
    rgba = o.sprite.rgba()
    if look.light:
        rgba = jitter_light(rgba, **look.light)
    if look.harmonize:
        rgba = harmonize(rgba, bg_rgb, o.p.x, o.p.y, look.harmonize)
    if o.hidden.any():
        rgba = rgba.copy()
        rgba[o.hidden, 3] = 0
    return blend(look.blend, fg_bg, rgba, o.p.x, o.p.y, look.blend_params)


def layered_scene(r: "Renderer", ref: SampleRef, scene: Scene) -> tuple[np.ndarray, int]:
    """Quantised depth of the nearest surface (each object's visible pixels take its foot's value), and object 1's value."""
    bg_depth = r.bg_depth_q[ref.bg]
    depth = bg_depth.copy()
    surfaces = scene.ids if scene.surfaces is None else scene.surfaces
    for i, o in enumerate([*scene.objects, *scene.distractors], start=1):
        x0, y0 = max(o.p.x, 0), max(o.p.y, 0)
        box = (slice(y0, max(o.p.y + o.p.h, 0)), slice(x0, max(o.p.x + o.p.w, 0)))  # an object is seen only inside its box
        depth[box][surfaces[box] == i] = depth_at(bg_depth, o.p.foot)
    return depth, int(depth_at(bg_depth, scene.objects[0].p.foot))


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
        geometry = object_geometry(scene.ids, i, o.p.x, o.p.y, o.sprite.shown, o.sprite.box, o.sprite.pixels,
                                   (seen.rles[i - 1], seen.boxes[i - 1].tolist(), int(seen.areas[i - 1])))  # fmt: skip
        objects.append({
            "id": i, "fg": o.fg, "fg_file": r.fg_files[o.fg], "category": r.fg_categories[o.fg],
            "flip": o.flip, "scale": round(o.p.scale, 6), "foot": list(o.p.foot),
            "depth": round(int(depth_at(r.bg_depth_q[ref.bg], o.p.foot)) / top, 6), "order": ranks[i - 1], **geometry,
            **drawn(r, o, scene.looks[i - 1] if scene.looks else None),
        })  # fmt: skip
    annotation.update(visible=objects[0]["visible"], objects=objects, dropped=scene.dropped)
    if r.config.distractors:
        annotation["distractors"] = described_distractors(r, ref, scene)
    return r.members(scene.fg_bg, scene.mask, depth, annotation, scene.ids)


def drawn(r: "Renderer", o: "Candidate", look: Look | None) -> dict:
    """The variety an object was pasted with, as its json records it (nothing where pasting does not vary):
    ``rotate`` (degrees), ``blend`` (mode) and ``blend_params``, ``light`` (factors), ``harmonize`` (fraction)."""
    record = {"rotate": o.sprite.angle} if r.config.rotates else {}
    if look is not None:
        record.update(blend=look.blend, blend_params=look.blend_params)
        if look.light is not None:
            record["light"] = look.light
        if look.harmonize is not None:
            record["harmonize"] = look.harmonize
    return record


def described_distractors(r: "Renderer", ref: SampleRef, scene: Scene) -> list[dict]:
    """Each distractor's provenance: its file, in-frame box, depth, visible share, flip, scale and look."""
    top = (1 << r.config.depth_bits) - 1
    described = []
    for j, o in enumerate(scene.distractors):
        own = len(scene.objects) + 1 + j
        seen = int(np.count_nonzero(scene.surfaces == own))
        total = o.framed
        described.append({
            "file": r.distractor_files[o.fg - len(r.fg)], "flip": o.flip, "scale": round(o.p.scale, 6),
            "box": box(o.layer.mask, o.layer.x, o.layer.y),
            "depth": round(int(depth_at(r.bg_depth_q[ref.bg], o.p.foot)) / top, 6),
            "visible": round(seen / total, 6) if total else 0.0,
            **drawn(r, o, scene.looks[len(scene.objects) + j] if scene.looks else None),
        })  # fmt: skip
    return described
