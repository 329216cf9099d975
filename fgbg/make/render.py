"""Render planned samples: placement, composite, mask, depth, encoded members; the worker side.

A :class:`Renderer` holds the prepared assets of one store, read from its ``assets/``
folder by the process that uses it (workers open their own files; nothing is shared).
:func:`init_worker` builds a worker's renderer and :func:`render_shard` renders and
commits one whole shard: the two functions ``generate`` maps over the shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgbg import codecs
from fgbg.make.assets import fg_mask
from fgbg.make.compose import (
    Placement,
    blend_premultiplied,
    flip_fg,
    paste_mask,
    premultiply,
    resize_fg,
    sample_perspective_placement,
    sample_placement,
    sample_rng,
)
from fgbg.config import GenerateConfig
from fgbg.depth.estimator import Estimator, apply_scale, image_range, load_estimator
from fgbg.depth.layered import layered_depth, quantize_depth
from fgbg.make.plan import Plan, SampleRef, Shard
from fgbg.store.identity import STATE_JSON
from fgbg.store.layout import DATASET_JSON, WORK_DIR, asset_paths
from fgbg.store.write import write_shard

BG_DEPTH_BITS = 16  # bg inverse-depth maps are kept in assets/ at 16 bits
LAYERED_BATCH = 64  # samples rendered per call when no network is involved


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

    def __post_init__(self) -> None:
        self.bg_depth_q = [quantize_depth(d, self.config.depth_bits) for d in self.bg_depth]
        self.fg_flipped = [flip_fg(fg) for fg in self.fg]
        self._unscaled: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_store(cls, store: Path, threads: int = 1) -> "Renderer":
        """Read the prepared assets (and load the depth network, if any) of a store.

        A store in progress is described by ``.work/state.json``, a complete one by
        ``dataset.json``; either gives the same renderer, so any sample can be re-made.
        """
        work_state = Path(store) / WORK_DIR / STATE_JSON
        if work_state.exists():
            state = json.loads(work_state.read_text())
        else:
            state = json.loads((Path(store) / DATASET_JSON).read_text())
            state["depth_scales"] = state["depth"].get("depth_scales")
        config = GenerateConfig.from_dict(state["config"])
        estimator = None
        if config.depth == "estimator":
            estimator = load_estimator(config.depth_model, config.depth_preset or None, threads)
        n_bg, n_fg = len(state["sources"]["bg"]), len(state["sources"]["fg"])
        top = (1 << BG_DEPTH_BITS) - 1
        return cls(
            config=config,
            bg=[codecs.decode_jpeg(p.read_bytes()) for p in asset_paths(store, "bg", n_bg)],
            bg_depth=[
                codecs.decode_png(p.read_bytes()).astype(np.float32) / top for p in asset_paths(store, "bg_depth", n_bg)
            ],
            ground_top=[s["ground_top"] for s in state["sources"]["bg"]],
            fg=[codecs.decode_png(p.read_bytes()) for p in asset_paths(store, "fg", n_fg)],
            bg_files=[s["file"] for s in state["sources"]["bg"]],
            fg_files=[s["file"] for s in state["sources"]["fg"]],
            estimator=estimator,
            depth_scales=[tuple(r) for r in state["depth_scales"]] if estimator else None,
        )

    def place(self, ref: SampleRef) -> Placement:
        """The sample's placement: depends only on (seed, key) and the assets."""
        rng = sample_rng(self.config.seed, ref.key)
        fg_hw = self.fg[ref.fg].shape[:2]
        if self.config.perspective:
            return sample_perspective_placement(
                rng, fg_hw, self.bg_depth[ref.bg], self.config.scale_range(), self.ground_top[ref.bg]
            )
        return sample_placement(rng, fg_hw, self.config.size, self.config.scale_range())

    def compose(self, ref: SampleRef) -> tuple[Placement, np.ndarray, np.ndarray]:
        """(placement, fg_bg uint8 (S, S, 3), mask uint8 (S, S) in {0, 255})."""
        p = self.place(ref)
        premultiplied, inverse_alpha, mask = self.placed_fg(ref.fg, ref.flip, p.w, p.h)
        fg_bg = blend_premultiplied(self.bg[ref.bg], premultiplied, inverse_alpha, p.x, p.y)
        return p, fg_bg, paste_mask(mask, p.x, p.y, self.config.size)

    def placed_fg(self, fg: int, flip: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fg (flipped or not) at (w, h), premultiplied, and its binary mask; unscaled ones cached."""
        key = (fg, flip, w, h)
        if key in self._unscaled:
            return self._unscaled[key]
        rgba = resize_fg((self.fg_flipped if flip else self.fg)[fg], w, h)
        placed = (*premultiply(rgba), fg_mask(rgba))
        if rgba.shape[:2] == self.fg[fg].shape[:2]:
            self._unscaled[key] = placed
        return placed

    def layered(self, ref: SampleRef, p: Placement, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """Quantised depth by the layered rule, and the fg's (foot) value."""
        bg_depth = self.bg_depth_q[ref.bg]
        fx, fy = p.foot
        fg_value = bg_depth[fy, fx]
        depth = bg_depth.copy()
        box = (slice(p.y, p.y + p.h), slice(p.x, p.x + p.w))  # the rule changes nothing outside it
        depth[box] = layered_depth(bg_depth[box], mask[box], fg_value)
        return depth, int(fg_value)

    def estimated(self, refs: list[SampleRef], fg_bgs: list[np.ndarray], masks: list[np.ndarray]):
        """Quantised network depth for a batch, the fg's (median) values and clipped pixels."""
        raw = self.estimator(np.stack(fg_bgs))
        out, clipped = [], 0
        for ref, m, mask in zip(refs, raw, masks):
            lo, hi = image_range(m) if self.config.depth_norm == "image" else self.depth_scales[ref.bg]
            scaled, n = apply_scale(m, lo, hi)
            clipped += n
            q = quantize_depth(scaled, self.config.depth_bits)
            out.append((q, int(np.median(q[mask > 0])) if mask.any() else 0))
        return out, clipped

    def render_batch(self, refs: list[SampleRef]) -> tuple[list[dict[str, bytes]], int]:
        """Members of each sample ({"fg_bg.jpg", "mask.png", "depth.png", "json": bytes}),
        and the number of depth pixels clipped to the store's scale."""
        composed = [self.compose(ref) for ref in refs]
        if self.estimator is None:
            depths = [self.layered(ref, p, mask) for ref, (p, _, mask) in zip(refs, composed)]
            clipped = 0
        else:
            depths, clipped = self.estimated(refs, [c[1] for c in composed], [c[2] for c in composed])
        samples = [
            self.encode(ref, p, fg_bg, mask, depth, fg_value)
            for ref, (p, fg_bg, mask), (depth, fg_value) in zip(refs, composed, depths)
        ]
        return samples, clipped

    def encode(self, ref, p: Placement, fg_bg, mask, depth, fg_value: int) -> dict[str, bytes]:
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
        return {
            "fg_bg.jpg": codecs.encode_jpeg(fg_bg, c.jpeg_quality),
            "mask.png": codecs.encode_png_gray(mask),
            "depth.png": codecs.encode_png_gray(depth),
            "json": json.dumps(annotation, separators=(",", ":")).encode(),
        }


# ---------------------------------------------------------------- the worker side of generate

_renderer: Renderer | None = None  # this worker's, built once by init_worker


def init_worker(out: str, threads: int) -> None:
    global _renderer
    _renderer = Renderer.from_store(Path(out), threads)


def render_shard(task: tuple[str, int, int, int]) -> tuple[int, dict, list[str]]:
    """Render and commit one shard (out, index, start, stop); returns (index, file record, manifest lines)."""
    out, index, start, stop = task
    r = _renderer
    plan = Plan.from_config(len(r.bg), len(r.fg), r.config)
    shard = Shard(index, start, stop)
    annotations: list[str] = []
    clipped = 0
    batch = r.config.depth_batch if r.estimator is not None else LAYERED_BATCH

    def samples():
        nonlocal clipped
        refs = list(plan.samples(shard))
        for i in range(0, len(refs), batch):
            rendered, n = r.render_batch(refs[i : i + batch])
            clipped += n
            for ref, members in zip(refs[i : i + batch], rendered):
                annotations.append(members["json"].decode())
                yield ref.key, members

    record = write_shard(Path(out), r.config.format, shard.name, samples())
    return index, {**record, "depth_clipped": clipped}, annotations
