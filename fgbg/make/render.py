"""Render planned samples: placement, composite, mask, depth, encoded members; the worker side.

A :class:`Renderer` holds the decoded prepared assets of one store and its sprites (the fgs
at their pasted sizes, :mod:`fgbg.make.sprites`); it composes a one-object sample itself and a
several-object one through :mod:`fgbg.make.scene`. It is built from a
:class:`Prepared` (the encoded bytes of ``assets/`` and the run's state), which the driver
reads once and the engine hands to every worker process once (on Ray, through the object
store), so workers never read the driver's disk. :func:`render_shard` renders and commits
one whole shard: the function ``generate`` maps over the shards.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import cv2
import numpy as np

from fgbg import codecs
from fgbg.make.compose import (
    VISIBLE_TRIES,
    Footprint,
    Placement,
    blend_premultiplied,
    depth_at,
    hide,
    paste_mask,
    sample_free_perspective_placement,
    sample_free_placement,
    sample_perspective_placement,
    sample_placement,
    sample_rng,
    scaled_size,
    visible_fraction,
)
from fgbg.config import GenerateConfig
from fgbg.depth.estimator import Estimator, apply_scale, image_range, infer_batch, load_estimator
from fgbg.depth.layered import layered_depth, nearer_than_layer, quantize_depth, standable
from fgbg.depth.pipeline import pipeline, pipeline_threads
from fgbg.engine import visible_store
from fgbg.errors import CorruptStore
from fgbg.make.categories import store_categories
from fgbg.make.occlusion import Layer, without_masks
from fgbg.make.scene import Scene, compose_scene, encode_scene, layered_scene
from fgbg.make.sprites import Sprite, SpriteCache
from fgbg.make.variety import draw_rotation, overlap
from fgbg.store.plan import Plan, SampleRef, Shard
from fgbg.store.identity import PRIOR_ORIGIN as PRIOR, STATE_JSON
from fgbg.store.layout import DATASET_JSON, WORK_DIR, asset_paths
from fgbg.store.write import write_shard

BG_DEPTH_BITS = 16  # bg inverse-depth maps are kept in assets/ at 16 bits


@dataclass(frozen=True)
class Prepared:
    """A store's prepared inputs as the encoded bytes of ``assets/`` (small: ~30 kB per image at 224 px),
    and the run's state (config, sources, depth scales): all a worker needs to render any sample.

    The driver reads it once, after writing the assets; the engine sends it to every worker
    process once (on Ray through the object store), so workers need not see the driver's disk.
    """

    state: dict  # .work/state.json of a store in progress, or dataset.json's equivalent
    bg: tuple[bytes, ...]  # assets/bg/*.jpg
    bg_depth: tuple[bytes, ...]  # assets/bg_depth/*.png, 16-bit inverse depth
    fg: tuple[bytes, ...]  # assets/fg/*.png, RGBA
    distractor: tuple[bytes, ...] = ()  # assets/distractor/*.png, RGBA (--distractors)

    @classmethod
    def from_store(cls, store: Path) -> "Prepared":
        """A store in progress is described by ``.work/state.json``, a complete one by
        ``dataset.json``; either gives the same assets, so any sample can be re-made."""
        work_state = Path(store) / WORK_DIR / STATE_JSON
        if work_state.exists():
            state = json.loads(work_state.read_text())
        else:
            state = json.loads((Path(store) / DATASET_JSON).read_text())
            state["depth_scales"] = state["depth"].get("depth_scales")
        n_bg, n_fg = len(state["sources"]["bg"]), len(state["sources"]["fg"])
        n_distractors = len(state["sources"].get("distractor", []))
        return cls(
            state, _read_assets(store, "bg", n_bg), _read_assets(store, "bg_depth", n_bg), _read_assets(store, "fg", n_fg),
            _read_assets(store, "distractor", n_distractors),
        )  # fmt: skip


def _read_assets(store: Path, kind: str, n: int) -> tuple[bytes, ...]:
    """The encoded files of one kind of prepared asset, in index order.

    Raises:
        CorruptStore: one cannot be read (names it).
    """
    try:
        return tuple(p.read_bytes() for p in asset_paths(store, kind, n))
    except OSError as e:
        raise CorruptStore(f"{e.filename}: a prepared asset cannot be read ({e.strerror}); rerun the same command to write it again") from None


class Candidate(NamedTuple):
    """One drawn object: its fg, placement, sprite (mask; colours when kept), where the bg hides it, and how much is seen."""

    fg: int
    flip: int
    p: Placement
    sprite: Sprite  # the fg at its placed size
    hidden: np.ndarray  # bool (h, w): where the bg is nearer than its layer
    value: float  # its layer's inverse depth: the bg's at its foot, in [0, 1]
    seen: float  # fraction of its mask the bg leaves visible
    area: int  # pixels of its mask the bg leaves visible
    layer: Layer  # its pixels the bg leaves visible, at its depth (the in-frame part)
    in_frame: float = 1.0  # fraction of its mask inside the frame (below 1 only with --truncate)

    @property
    def mask(self) -> np.ndarray:
        return self.sprite.mask

    @property
    def framed(self) -> int:
        """Pixels of its mask inside the frame."""
        return self.sprite.pixels if self.in_frame == 1.0 else round(self.sprite.pixels * self.in_frame)


class OneObject(NamedTuple):
    """A single-object composite (:meth:`Renderer.compose`)."""

    p: Placement
    fg_bg: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # uint8 (H, W) in {0, 255}: the visible fg
    visible: float | None  # visible fraction, or None where the bg has no real depth

    @property
    def first_mask(self) -> np.ndarray:
        return self.mask


@dataclass
class Renderer:
    config: GenerateConfig
    bg: list[np.ndarray]  # uint8 (H, W, 3), decoded from assets/bg (what training sees)
    bg_depth: list[np.ndarray]  # float32 (H, W) in [0, 1]
    ground_top: list[int]  # first row a foot may stand on, per bg
    fg: list[np.ndarray]  # uint8 (h, w, 4)
    bg_files: list[str]
    fg_files: list[str]
    estimator: Estimator | None = None  # per-sample network depth (--depth estimator)
    depth_scales: list[tuple[float, float]] | None = None  # (lo, hi) of raw network depth, per bg
    occluding: list[bool] | None = None  # per bg: a real depth map, so nearer bg pixels hide the fg (None: none)
    fg_categories: list[int] | None = None  # category id of every fg (None: one category)
    distractors: list[np.ndarray] = dataclasses.field(default_factory=list)  # uint8 (h, w, 4) cut-outs in no mask (--distractors)
    distractor_files: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.bg_depth_q = [quantize_depth(d, self.config.depth_bits) for d in self.bg_depth]
        self.occluding = self.occluding or [False] * len(self.bg)
        self.fg_categories = self.fg_categories or [1] * len(self.fg)
        self.feet = [self.standable_feet(d) if o else None for d, o in zip(self.bg_depth, self.occluding)]
        self.pasteable = self.fg + self.distractors  # sprite index i: fg i, then distractor i - len(fg)
        self.sprites = SpriteCache(self.pasteable)  # the fgs at the sizes they were last drawn

    @classmethod
    def from_store(cls, store: Path, threads: int = 1) -> "Renderer":
        """Read the prepared assets (and load the depth network, if any) of a store (see :class:`Prepared`)."""
        return cls.from_prepared(Prepared.from_store(store), threads)

    @classmethod
    def from_prepared(cls, prepared: "Prepared", threads: int = 1, estimator: Estimator | None = None) -> "Renderer":
        """Decode prepared assets held in memory, and load the depth network, if any, with ``threads``
        (unless ``estimator`` is given: e.g. Ray's, which sends the batches to depth actors)."""
        state = prepared.state
        config = GenerateConfig.from_dict(state["config"])
        if config.depth == "estimator" and estimator is None:
            estimator = load_estimator(config.depth_model, config.depth_preset or None, threads, config.depth_device)
        top = (1 << BG_DEPTH_BITS) - 1
        return cls(
            config=config,
            bg=[codecs.decode_jpeg(data) for data in prepared.bg],
            bg_depth=[codecs.decode_png(data).astype(np.float32) / top for data in prepared.bg_depth],
            ground_top=[s["ground_top"] for s in state["sources"]["bg"]],
            fg=[codecs.decode_png(data) for data in prepared.fg],
            bg_files=[s["file"] for s in state["sources"]["bg"]],
            fg_files=[s["file"] for s in state["sources"]["fg"]],
            estimator=estimator,
            depth_scales=[tuple(r) for r in state["depth_scales"]] if estimator else None,
            occluding=[s["depth"] != PRIOR for s in state["sources"]["bg"]],
            fg_categories=store_categories(state).of_fg,
            distractors=[codecs.decode_png(data) for data in prepared.distractor],
            distractor_files=[s["file"] for s in state["sources"].get("distractor", [])],
        )

    def standable_feet(self, depth: np.ndarray) -> np.ndarray | None:
        """Flat indices of the pixels of a real depth map a fg's foot may stand on, with --perspective
        and --stand-on up (surfaces facing up, :func:`standable`); None (anywhere) otherwise, or where
        none faces up. Without --perspective a placement draws its box, not its foot."""
        if self.config.stand_on != "up" or not self.config.perspective:
            return None
        feet = np.flatnonzero(standable(depth))
        return feet if len(feet) else None

    def draw(self, bg: int, fg: int, rng: np.random.Generator, flip: int = 0, angle: float = 0.0) -> Placement:
        """One placement of fg ``fg`` (mirrored if ``flip``, turned by ``angle``) on bg ``bg``, drawn from ``rng``."""
        fg_hw = self.pasteable[fg].shape[:2]
        if self.config.varied:  # placed by its mask: turned, maybe partly out of the frame
            footprint_at = lambda scale: self.footprint(fg, flip, scale, angle)
            c = self.config
            if c.perspective:
                return sample_free_perspective_placement(
                    rng, footprint_at, self.bg_depth[bg], c.scale_range(), self.ground_top[bg], self.feet[bg], c.truncate
                )
            return sample_free_placement(rng, footprint_at, self.bg_depth[bg].shape, c.scale_range(), c.truncate)
        if self.config.perspective:
            return sample_perspective_placement(
                rng, fg_hw, self.bg_depth[bg], self.config.scale_range(), self.ground_top[bg], self.feet[bg]
            )
        return sample_placement(rng, fg_hw, self.config.frame, self.config.scale_range())

    def place(self, ref: SampleRef) -> tuple[Placement, tuple[np.ndarray, np.ndarray, np.ndarray], float | None]:
        """The sample's placement, its placed fg (premultiplied, inverse alpha, visible mask; see
        :meth:`Sprite.colour`) and its visible fraction (None on a bg without real depth: nothing hides it).

        Depends only on (seed, key) and the assets (see :meth:`first_object`).
        """
        rng = sample_rng(self.config.seed, ref.layout_key)
        if not self.redraws(ref.bg):  # one draw, as stores without real depth always had
            p = self.draw(ref.bg, ref.fg, rng)
            sprite = self.sprite(ref.fg, ref.flip, p.w, p.h)
            return p, (*sprite.colour(), sprite.mask), None
        o = self.first_object(ref, rng)
        return o.p, hide(*o.sprite.colour(), o.mask, o.hidden), o.seen if self.occluding[ref.bg] else None

    def footprint(self, fg: int, flip: int, scale: float, angle: float) -> Footprint:
        """The sized and turned fg's canvas, mask box and foot (:class:`Footprint`), from its sprite."""
        sprite = self.turned_sprite(fg, flip, scale, angle)
        return Footprint(sprite.mask.shape, sprite.box, sprite.foot())

    def turned_sprite(self, fg: int, flip: int, scale: float, angle: float) -> Sprite:
        """Fg (or distractor) ``fg`` at ``scale``, mirrored if ``flip``, turned by ``angle`` degrees."""
        return self.sprites.get(fg, flip, *scaled_size(self.pasteable[fg].shape[:2], scale), angle)

    def draw_angle(self, rng: np.random.Generator) -> float:
        """An object's angle in degrees: drawn from ``rng`` with --rotate, else 0 (no draw)."""
        return draw_rotation(rng, self.config.rotate_min, self.config.rotate_max) if self.config.rotates else 0.0

    def redraws(self, bg: int) -> bool:
        """Whether a draw on bg ``bg`` may fall short of a bar and be redrawn: the bg has real depth
        (it may hide the fg), or --min-area or --truncate is set."""
        return self.occluding[bg] or self.config.min_area > 0 or self.config.truncate > 0

    def in_frame_enough(self, o: "Candidate") -> bool:
        """Whether no more than --truncate of the object's mask lies outside the frame."""
        return o.in_frame >= 1.0 - self.config.truncate

    def first_object(self, ref: SampleRef, rng: np.random.Generator) -> "Candidate":
        """The key's fg placed: drawn from ``rng`` until its visible fraction reaches ``min_visible`` and its
        visible area ``min_area``, where the bg can hide it or --min-area is set (else one draw); after
        VISIBLE_TRIES draws the most visible one (the first of equals) is kept, below the bar.

        With --rotate its angle is drawn first, once; with --truncate a draw must also keep enough
        of it in the frame: where none of the draws does, the most visible is moved into the frame."""
        angle = self.draw_angle(rng)
        if not self.redraws(ref.bg):
            return self.candidate(ref.bg, ref.fg, ref.flip, self.draw(ref.bg, ref.fg, rng, ref.flip, angle), angle)
        best = None  # draws are tested on their masks: only the kept one's colours are resized
        for _ in range(VISIBLE_TRIES):
            o = self.candidate(ref.bg, ref.fg, ref.flip, self.draw(ref.bg, ref.fg, rng, ref.flip, angle), angle)
            if best is None or (self.in_frame_enough(o), o.seen) > (self.in_frame_enough(best), best.seen):
                best = o
            if o.seen >= self.config.min_visible and o.area >= self.config.min_area and self.in_frame_enough(o):
                break
        if not self.in_frame_enough(best):
            best = self.candidate(ref.bg, ref.fg, ref.flip, self.into_frame(best), angle)
        return best

    def into_frame(self, o: "Candidate") -> Placement:
        """``o``'s placement moved the least so that its mask's box lies in the frame (as far as it fits)."""
        height, width = self.bg_depth[0].shape
        bx, by, bw, bh = o.sprite.box
        x = min(max(o.p.x, -bx), max(width - bx - bw, -bx))
        y = min(max(o.p.y, -by), max(height - by - bh, -by))
        return o.p._replace(x=x, y=y)

    def candidate(self, bg: int, fg: int, flip: int, p: Placement, angle: float = 0.0) -> "Candidate":
        """Fg ``fg`` (mirrored if ``flip``) drawn at ``p`` on bg ``bg``: sized, masked, and cut where the bg is nearer."""
        if self.config.varied:
            return self.free_candidate(bg, fg, flip, p, angle)
        sprite = self.sprite(fg, flip, p.w, p.h)
        fx, fy = p.foot
        value = float(self.bg_depth[bg][fy, fx])
        if not self.occluding[bg]:
            nothing = np.zeros(sprite.mask.shape, bool)
            return Candidate(fg, flip, p, sprite, nothing, value, 1.0, sprite.pixels, Layer(p.x, p.y, sprite.shown, value))
        hidden, seen = self.hidden(bg, p, sprite.mask)
        shown = sprite.shown & ~hidden
        return Candidate(fg, flip, p, sprite, hidden, value, seen, int(np.count_nonzero(shown)), Layer(p.x, p.y, shown, value))

    def free_candidate(self, bg: int, fg: int, flip: int, p: Placement, angle: float) -> "Candidate":
        """:meth:`candidate` of a turned or truncated fg: its sprite turned by ``angle``, its layer the
        in-frame part of its mask, its depth read at its foot (at the nearest frame pixel where the foot is out)."""
        sprite = self.turned_sprite(fg, flip, p.scale, angle)
        depth = self.bg_depth[bg]
        value = float(depth_at(depth, p.foot))
        hidden = np.zeros(sprite.mask.shape, bool)
        region = overlap(depth.shape, sprite.mask.shape, p.x, p.y)
        if region is None:  # wholly out of the frame: nothing seen
            empty = Layer(0, 0, np.zeros((0, 0), bool), value)
            return Candidate(fg, flip, p, sprite, hidden, value, 0.0, 0, empty, 0.0)
        frame, part = region
        inside = sprite.shown[part]
        if self.occluding[bg]:
            hidden[part] = nearer_than_layer(depth[frame], value) & inside
        shown = inside & ~hidden[part]
        in_frame, area = int(np.count_nonzero(inside)), int(np.count_nonzero(shown))
        seen = area / in_frame if in_frame else 0.0
        layer = Layer(frame[1].start, frame[0].start, shown, value)
        return Candidate(fg, flip, p, sprite, hidden, value, seen, area, layer, in_frame / sprite.pixels if sprite.pixels else 0.0)

    def sprite(self, fg: int, flip: int, w: int, h: int) -> Sprite:
        """The fg (mirrored if ``flip``) at (w, h): its mask, its colours when asked (:mod:`fgbg.make.sprites`)."""
        return self.sprites.get(fg, flip, w, h)

    def hidden(self, bg: int, p: Placement, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """Where nearer bg pixels hide the placed fg (bool (h, w)), and the fraction of its ``mask`` still seen.

        The fg is a flat layer at the bg's (16-bit) inverse depth at its foot, the value its
        perspective scale was read at."""
        depth = self.bg_depth[bg]
        fx, fy = p.foot
        hidden = nearer_than_layer(depth[p.y : p.y + p.h, p.x : p.x + p.w], depth[fy, fx])
        return hidden, visible_fraction(mask, np.where(hidden, np.uint8(0), mask))

    def compose(self, ref: SampleRef) -> tuple[Placement, np.ndarray, np.ndarray, float | None]:
        """(placement, fg_bg uint8 (H, W, 3), mask uint8 (H, W) in {0, 255} of the visible fg,
        visible fraction or None where the bg has no real depth)."""
        p, (premultiplied, inverse_alpha, mask), visible = self.place(ref)
        fg_bg = blend_premultiplied(self.bg[ref.bg], premultiplied, inverse_alpha, p.x, p.y)
        return p, fg_bg, paste_mask(mask, p.x, p.y, self.config.frame), visible

    def layered(self, ref: SampleRef, p: Placement, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """Quantised depth by the layered rule (the visible ``mask`` pixels take the fg's foot value), and that value."""
        bg_depth = self.bg_depth_q[ref.bg]
        fx, fy = p.foot
        fg_value = bg_depth[fy, fx]
        depth = bg_depth.copy()
        box = (slice(p.y, p.y + p.h), slice(p.x, p.x + p.w))  # the rule changes nothing outside it
        depth[box] = layered_depth(bg_depth[box], mask[box], fg_value)
        return depth, int(fg_value)

    def estimated(self, ref: SampleRef, mask: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, int, int]:
        """One sample's network depth from the estimator's raw map (h, w) at the network's size:
        the quantised map (H, W), the fg's (median) value and the pixels clipped to the store's scale."""
        m = self.estimator.to_map(raw, mask.shape)
        lo, hi = image_range(m) if self.config.depth_norm == "image" else self.depth_scales[ref.bg]
        scaled, clipped = apply_scale(m, lo, hi)
        q = quantize_depth(scaled, self.config.depth_bits)
        return q, int(np.median(q[mask > 0])) if mask.any() else 0, clipped

    def render_many(self, refs: Iterable[SampleRef]) -> Iterator[tuple[SampleRef, dict[str, bytes], int]]:
        """(ref, members, depth pixels clipped) of every sample, in the order of ``refs``.

        With a network, through the labelling pipeline (:mod:`fgbg.depth.pipeline`):
        ``config.depth_batch`` composites per network call; on a GPU, CPU threads compose and
        encode around the one network. The bytes depend neither on the batch size nor on the threads.
        """
        if self.estimator is None:
            for ref in refs:
                c = self.composite(ref)
                yield ref, self.encode_composite(ref, c, *self.layered_composite(ref, c)), 0
            return
        estimator = self.estimator

        def prepare(ref: SampleRef):
            c = self.composite(ref)
            return c, estimator.to_input(c.fg_bg)

        def finish(ref: SampleRef, prepared, raw: np.ndarray):
            c, _ = prepared
            depth, fg_value, clipped = self.estimated(ref, c.first_mask, raw)
            return ref, self.encode_composite(ref, c, depth, fg_value), clipped

        infer = lambda prepared: infer_batch(estimator, [x for _, x in prepared])
        threads = pipeline_threads(estimator.device.is_cuda, estimator.threads)
        yield from pipeline(refs, prepare, infer, finish, self.config.depth_batch, **threads)

    def composite(self, ref: SampleRef) -> "OneObject | Scene":
        """The sample composed: one object, or several (``--objects``)."""
        return compose_scene(self, ref) if self.config.several else OneObject(*self.compose(ref))

    def layered_composite(self, ref: SampleRef, c: "OneObject | Scene") -> tuple[np.ndarray, int]:
        """Depth by the layered rule and the key's fg's value (see :meth:`layered`, :func:`layered_scene`)."""
        return layered_scene(self, ref, c) if isinstance(c, Scene) else self.layered(ref, c.p, c.mask)

    def encode_composite(self, ref: SampleRef, c: "OneObject | Scene", depth: np.ndarray, fg_value: int) -> dict[str, bytes]:
        if isinstance(c, Scene):
            return encode_scene(self, ref, c, depth, fg_value)
        return self.encode(ref, c.p, c.fg_bg, c.mask, depth, fg_value, c.visible)

    def render_batch(self, refs: list[SampleRef]) -> tuple[list[dict[str, bytes]], int]:
        """Members of each sample ({"fg_bg.jpg", "mask.png", "depth.png", "json": bytes}),
        and the number of depth pixels clipped to the store's scale."""
        rendered = list(self.render_many(refs))
        return [members for _, members, _ in rendered], sum(clipped for *_, clipped in rendered)

    def encode(self, ref, p: Placement, fg_bg, mask, depth, fg_value: int, visible: float | None = None) -> dict[str, bytes]:
        """The sample's members; the annotation has ``visible`` (fraction of the fg seen) only on bgs with real depth."""
        return self.members(fg_bg, mask, depth, self.annotation(ref, p, mask, fg_value, visible))

    def annotation(self, ref, p: Placement, mask, fg_value: int, visible: float | None = None) -> dict:
        """The json of a sample: its key, the key's fg's placement and depth value, the mask's area."""
        annotation = {
            "key": ref.key,
            "bg": ref.bg,
            "bg_file": self.bg_files[ref.bg],
            "fg": ref.fg,
            "fg_file": self.fg_files[ref.fg],
            "flip": ref.flip,
            "k": ref.k,
            "x": p.x,
            "y": p.y,
            "w": p.w,
            "h": p.h,
            "scale": round(p.scale, 6),
            "foot": list(p.foot),
            "depth": round(fg_value / ((1 << self.config.depth_bits) - 1), 6),
            "mask_area": int(np.count_nonzero(mask)),
        }
        if visible is not None:
            annotation["visible"] = round(visible, 6)
        return annotation

    def members(self, fg_bg, mask, depth, annotation: dict, instances: np.ndarray | None = None) -> dict[str, bytes]:
        """The encoded members of a sample ({"fg_bg.jpg", "mask.png", "depth.png"[, "instances.png"], "json": bytes})."""
        members = {
            "fg_bg.jpg": codecs.encode_jpeg(fg_bg, self.config.jpeg_quality),
            "mask.png": codecs.encode_png_gray(mask),
            "depth.png": codecs.encode_png_gray(depth),
        }
        if instances is not None:
            members["instances.png"] = codecs.encode_png_gray(instances)
        members["json"] = json.dumps(annotation, separators=(",", ":")).encode()
        return members


# ---------------------------------------------------------------- the worker side of generate

_renderer: tuple[Prepared, Renderer] | None = None  # this worker process's, built on its first task


def worker_renderer(prepared: Prepared, threads: int, estimator: Estimator | None = None) -> Renderer:
    """This process's renderer of ``prepared``: decoded (and its network loaded) once, on the first task."""
    global _renderer
    if _renderer is None or _renderer[0] is not prepared:
        cv2.setNumThreads(1)  # workers are processes already: OpenCV's threads only cost on sprites this small (x2.7 on a turn)
        _renderer = (prepared, Renderer.from_prepared(prepared, threads, estimator))
    return _renderer[1]


def manifest_line(annotation: bytes, several: bool) -> str:
    """A sample's line in manifest.jsonl: its annotation, without the objects' RLE masks where it has several."""
    if not several:
        return annotation.decode()
    return json.dumps(without_masks(json.loads(annotation)), separators=(",", ":"))


def render_shard(shared: tuple, task: tuple[str, int, int, int]) -> tuple[int, dict, list[str]]:
    """Render one shard and commit it under the store (atomic renames: a retry never half-writes or doubles it).

    Args:
        shared: (the prepared assets, threads for a depth network[, the estimator to use instead
            of loading the network, e.g. Ray's depth actors]): the same for every task.
        task: (store path, shard index, first sample, end sample).

    Returns:
        (index, file record, manifest lines).

    Raises:
        UserError: the store is not visible here (a cluster node without the shared file system).
    """
    out, index, start, stop = task
    visible_store(out, WORK_DIR)
    r = worker_renderer(*shared)
    plan = Plan.from_config(len(r.bg), len(r.fg), r.config)
    shard = Shard(index, start, stop)
    annotations: list[str] = []
    clipped = 0

    def samples():
        nonlocal clipped
        for ref, members, n in r.render_many(plan.samples(shard)):
            clipped += n
            annotations.append(manifest_line(members["json"], r.config.several))
            yield ref.key, members

    record = write_shard(Path(out), r.config.format, shard.name, samples())
    return index, {**record, "depth_clipped": clipped}, annotations
