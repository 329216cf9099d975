"""Render one planned sample: placement, composite, mask, depth, encoded members.

A :class:`Renderer` holds the prepared assets of one store, read from its ``assets/``
folder by the process that uses it (workers open their own files; nothing is shared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgbg import codecs
from fgbg.compose import (
    Placement,
    alpha_blend,
    flip_fg,
    paste_mask,
    resize_fg,
    sample_perspective_placement,
    sample_placement,
    sample_rng,
)
from fgbg.config import GenerateConfig
from fgbg.depth.layered import layered_depth, quantize_depth
from fgbg.plan import SampleRef
from fgbg.store.layout import ASSETS_DIR

BG_DEPTH_BITS = 16  # bg inverse-depth maps are kept in assets/ at 16 bits


def asset_paths(store: Path, kind: str, n: int) -> list[Path]:
    """assets/KIND/b000.jpg ... or f000.png ...: the prepared inputs by index."""
    prefix, ext = {"bg": ("b", ".jpg"), "bg_depth": ("b", ".png"), "fg": ("f", ".png"), "fg_mask": ("f", ".png")}[kind]
    width = max(3, len(str(max(n - 1, 0))))
    return [Path(store) / ASSETS_DIR / kind / f"{prefix}{i:0{width}d}{ext}" for i in range(n)]


@dataclass
class Renderer:
    config: GenerateConfig
    bg: list[np.ndarray]  # uint8 (S, S, 3), decoded from assets/bg (what training sees)
    bg_depth: list[np.ndarray]  # float32 (S, S) in [0, 1]
    ground_top: list[int]  # first row a foot may stand on, per bg
    fg: list[np.ndarray]  # uint8 (h, w, 4)
    bg_files: list[str]
    fg_files: list[str]

    def __post_init__(self) -> None:
        self.bg_depth_q = [quantize_depth(d, self.config.depth_bits) for d in self.bg_depth]
        self.fg_flipped = [flip_fg(fg) for fg in self.fg]

    @classmethod
    def from_store(cls, store: Path) -> "Renderer":
        state = json.loads((Path(store) / ".work" / "state.json").read_text())
        config = GenerateConfig.from_dict(state["config"])
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

    def render(self, ref: SampleRef) -> dict[str, bytes]:
        """Members of one sample: {"fg_bg.jpg", "mask.png", "depth.png", "json": bytes}."""
        c = self.config
        p = self.place(ref)
        fg = resize_fg((self.fg_flipped if ref.flip else self.fg)[ref.fg], p.w, p.h)
        fg_bg = alpha_blend(self.bg[ref.bg], fg, p.x, p.y)
        mask = paste_mask(fg, p.x, p.y, c.size)
        fx, fy = p.foot
        bg_depth = self.bg_depth_q[ref.bg]
        fg_value = bg_depth[fy, fx]
        depth = layered_depth(bg_depth, mask, fg_value)
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
            "foot": [fx, fy],
            "depth": round(float(fg_value) / ((1 << c.depth_bits) - 1), 6),
            "mask_area": int(np.count_nonzero(mask)),
        }
        return {
            "fg_bg.jpg": codecs.encode_jpeg(fg_bg, c.jpeg_quality),
            "mask.png": codecs.encode_png_gray(mask),
            "depth.png": codecs.encode_png_gray(depth),
            "json": json.dumps(annotation, separators=(",", ":")).encode(),
        }
