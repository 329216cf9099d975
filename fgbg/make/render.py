"""Render planned samples: placement, composite, mask, depth, encoded members; the worker side.

A :class:`Renderer` holds the decoded prepared assets of one store. It is built from a
:class:`Prepared` (the encoded bytes of ``assets/`` and the run's state), which the driver
reads once and the engine hands to every worker process once (on Ray, through the object
store), so workers never read the driver's disk. :func:`render_shard` renders and commits
one whole shard: the function ``generate`` maps over the shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from fgbg import codecs
from fgbg.make.assets import fg_mask
from fgbg.make.compose import (
    VISIBLE_TRIES,
    Placement,
    blend_premultiplied,
    flip_fg,
    hide,
    paste_mask,
    premultiply,
    resize_fg,
    sample_perspective_placement,
    sample_placement,
    sample_rng,
    visible_fraction,
)
from fgbg.config import GenerateConfig
from fgbg.depth.estimator import Estimator, apply_scale, image_range, infer_batch, load_estimator
from fgbg.depth.layered import layered_depth, nearer_than_layer, quantize_depth, standable
from fgbg.depth.pipeline import pipeline, pipeline_threads
from fgbg.engine import visible_store
from fgbg.errors import CorruptStore
from fgbg.make.plan import Plan, SampleRef, Shard
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
        return cls(state, _read_assets(store, "bg", n_bg), _read_assets(store, "bg_depth", n_bg), _read_assets(store, "fg", n_fg))


def _read_assets(store: Path, kind: str, n: int) -> tuple[bytes, ...]:
    """The encoded files of one kind of prepared asset, in index order.

    Raises:
        CorruptStore: one cannot be read (names it).
    """
    try:
        return tuple(p.read_bytes() for p in asset_paths(store, kind, n))
    except OSError as e:
        raise CorruptStore(f"{e.filename}: a prepared asset cannot be read ({e.strerror}); rerun the same command to write it again") from None


@dataclass
class Renderer:
    config: GenerateConfig
    bg: list[np.ndarray]  # uint8 (S, S, 3), decoded from assets/bg (what training sees)
    bg_depth: list[np.ndarray]  # float32 (S, S) in [0, 1]
    ground_top: list[int]  # first row a foot may stand on, per bg
    fg: list[np.ndarray]  # uint8 (h, w, 4)
    bg_files: list[str]
    fg_files: list[str]
    estimator: Estimator | None = None  # per-sample network depth (--depth estimator)
    depth_scales: list[tuple[float, float]] | None = None  # (lo, hi) of raw network depth, per bg
    occluding: list[bool] | None = None  # per bg: a real depth map, so nearer bg pixels hide the fg (None: none)

    def __post_init__(self) -> None:
        self.bg_depth_q = [quantize_depth(d, self.config.depth_bits) for d in self.bg_depth]
        self.occluding = self.occluding or [False] * len(self.bg)
        self.feet = [self.standable_feet(d) if o else None for d, o in zip(self.bg_depth, self.occluding)]
        self.fg_flipped = [flip_fg(fg) for fg in self.fg]
        self._unscaled: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

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
        )

    def standable_feet(self, depth: np.ndarray) -> np.ndarray | None:
        """Flat indices of the pixels of a real depth map a fg's foot may stand on, with --perspective
        and --stand-on up (surfaces facing up, :func:`standable`); None (anywhere) otherwise, or where
        none faces up. Without --perspective a placement draws its box, not its foot."""
        if self.config.stand_on != "up" or not self.config.perspective:
            return None
        feet = np.flatnonzero(standable(depth))
        return feet if len(feet) else None

    def draw(self, ref: SampleRef, rng: np.random.Generator) -> Placement:
        """One placement of the sample's fg on its bg, drawn from ``rng``."""
        fg_hw = self.fg[ref.fg].shape[:2]
        if self.config.perspective:
            return sample_perspective_placement(
                rng, fg_hw, self.bg_depth[ref.bg], self.config.scale_range(), self.ground_top[ref.bg], self.feet[ref.bg]
            )
        return sample_placement(rng, fg_hw, self.config.size, self.config.scale_range())

    def place(self, ref: SampleRef) -> tuple[Placement, tuple[np.ndarray, np.ndarray, np.ndarray], float | None]:
        """The sample's placement, its placed fg (premultiplied, inverse alpha, visible mask; see
        :meth:`placed_fg`) and its visible fraction (None on a bg without real depth: nothing hides it).

        Depends only on (seed, key) and the assets. On a bg with real depth, placements are drawn
        from the sample's one generator until the visible fraction reaches ``min_visible``; after
        VISIBLE_TRIES draws the most visible one (the first of equals) is kept, below the bar.
        """
        rng = sample_rng(self.config.seed, ref.key)
        if not self.occluding[ref.bg]:  # the prior: one draw, as stores without real depth always had
            p = self.draw(ref, rng)
            return p, self.placed_fg(ref.fg, ref.flip, p.w, p.h), None
        best = None  # (placement, sized fg, its mask, hidden, visible): only the kept draw is premultiplied
        for _ in range(VISIBLE_TRIES):
            p = self.draw(ref, rng)
            rgba = self.sized_fg(ref.fg, ref.flip, p.w, p.h)
            mask = fg_mask(rgba)
            hidden, visible = self.hidden(ref.bg, p, mask)
            if best is None or visible > best[-1]:
                best = p, rgba, mask, hidden, visible
            if visible >= self.config.min_visible:
                break
        p, rgba, mask, hidden, visible = best
        return p, hide(*premultiply(rgba), mask, hidden), visible

    def hidden(self, bg: int, p: Placement, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """Where nearer bg pixels hide the placed fg (bool (h, w)), and the fraction of its ``mask`` still seen.

        The fg is a flat layer at the bg's (16-bit) inverse depth at its foot, the value its
        perspective scale was read at."""
        depth = self.bg_depth[bg]
        fx, fy = p.foot
        hidden = nearer_than_layer(depth[p.y : p.y + p.h, p.x : p.x + p.w], depth[fy, fx])
        return hidden, visible_fraction(mask, np.where(hidden, np.uint8(0), mask))

    def compose(self, ref: SampleRef) -> tuple[Placement, np.ndarray, np.ndarray, float | None]:
        """(placement, fg_bg uint8 (S, S, 3), mask uint8 (S, S) in {0, 255} of the visible fg,
        visible fraction or None where the bg has no real depth)."""
        p, (premultiplied, inverse_alpha, mask), visible = self.place(ref)
        fg_bg = blend_premultiplied(self.bg[ref.bg], premultiplied, inverse_alpha, p.x, p.y)
        return p, fg_bg, paste_mask(mask, p.x, p.y, self.config.size), visible

    def placed_fg(self, fg: int, flip: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fg (flipped or not) at (w, h), premultiplied, and its binary mask; unscaled ones cached."""
        key = (fg, flip, w, h)
        if key in self._unscaled:
            return self._unscaled[key]
        rgba = self.sized_fg(fg, flip, w, h)
        placed = (*premultiply(rgba), fg_mask(rgba))
        if rgba.shape[:2] == self.fg[fg].shape[:2]:
            self._unscaled[key] = placed
        return placed

    def sized_fg(self, fg: int, flip: int, w: int, h: int) -> np.ndarray:
        """The fg (flipped or not) resized to (w, h): uint8 (h, w, 4)."""
        return resize_fg((self.fg_flipped if flip else self.fg)[fg], w, h)

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
        the quantised map (S, S), the fg's (median) value and the pixels clipped to the store's scale."""
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
                p, fg_bg, mask, visible = self.compose(ref)
                yield ref, self.encode(ref, p, fg_bg, mask, *self.layered(ref, p, mask), visible), 0
            return
        estimator = self.estimator

        def prepare(ref: SampleRef):
            p, fg_bg, mask, visible = self.compose(ref)
            return p, fg_bg, mask, visible, estimator.to_input(fg_bg)

        def finish(ref: SampleRef, prepared, raw: np.ndarray):
            p, fg_bg, mask, visible, _ = prepared
            depth, fg_value, clipped = self.estimated(ref, mask, raw)
            return ref, self.encode(ref, p, fg_bg, mask, depth, fg_value, visible), clipped

        infer = lambda prepared: infer_batch(estimator, [x for *_, x in prepared])
        threads = pipeline_threads(estimator.device.is_cuda, estimator.threads)
        yield from pipeline(refs, prepare, infer, finish, self.config.depth_batch, **threads)

    def render_batch(self, refs: list[SampleRef]) -> tuple[list[dict[str, bytes]], int]:
        """Members of each sample ({"fg_bg.jpg", "mask.png", "depth.png", "json": bytes}),
        and the number of depth pixels clipped to the store's scale."""
        rendered = list(self.render_many(refs))
        return [members for _, members, _ in rendered], sum(clipped for *_, clipped in rendered)

    def encode(self, ref, p: Placement, fg_bg, mask, depth, fg_value: int, visible: float | None = None) -> dict[str, bytes]:
        """The sample's members; the annotation has ``visible`` (fraction of the fg seen) only on bgs with real depth."""
        c = self.config
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
            "depth": round(fg_value / ((1 << c.depth_bits) - 1), 6),
            "mask_area": int(np.count_nonzero(mask)),
        }
        if visible is not None:
            annotation["visible"] = round(visible, 6)
        return {
            "fg_bg.jpg": codecs.encode_jpeg(fg_bg, c.jpeg_quality),
            "mask.png": codecs.encode_png_gray(mask),
            "depth.png": codecs.encode_png_gray(depth),
            "json": json.dumps(annotation, separators=(",", ":")).encode(),
        }


# ---------------------------------------------------------------- the worker side of generate

_renderer: tuple[Prepared, Renderer] | None = None  # this worker process's, built on its first task


def worker_renderer(prepared: Prepared, threads: int, estimator: Estimator | None = None) -> Renderer:
    """This process's renderer of ``prepared``: decoded (and its network loaded) once, on the first task."""
    global _renderer
    if _renderer is None or _renderer[0] is not prepared:
        _renderer = (prepared, Renderer.from_prepared(prepared, threads, estimator))
    return _renderer[1]


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
            annotations.append(members["json"].decode())
            yield ref.key, members

    record = write_shard(Path(out), r.config.format, shard.name, samples())
    return index, {**record, "depth_clipped": clipped}, annotations
