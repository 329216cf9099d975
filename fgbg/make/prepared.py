"""The prepared inputs a store keeps in ``OUT/assets``, written by the parent before any shard.

Workers read them back (``Renderer.from_store``), so every process renders from the very
same decoded pixels; readers of the store (stats, preview, training) use them too.
"""

from __future__ import annotations

from pathlib import Path

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.depth.layered import ground_plane_prior, quantize_depth
from fgbg.make.assets import Assets, fg_mask
from fgbg.make.render import BG_DEPTH_BITS
from fgbg.store.layout import ASSETS_DIR, asset_paths, atomic_write_bytes, make_dirs

ASSET_KINDS = ("bg", "bg_depth", "fg", "fg_mask")


def write_assets(out: Path, assets: Assets, config: GenerateConfig) -> None:
    """assets/bg/*.jpg, assets/bg_depth/*.png (16-bit), assets/fg/*.png, assets/fg_mask/*.png
    (and assets/distractor/*.png with --distractors), durably."""
    n_bg, n_fg = len(assets.bg), len(assets.fg)
    prior = ground_plane_prior(config.frame, config.horizon)
    for kind in ASSET_KINDS:
        make_dirs(Path(out) / ASSETS_DIR / kind)
    for path, bg in zip(asset_paths(out, "bg", n_bg), assets.bg):
        atomic_write_bytes(path, codecs.encode_jpeg(bg, config.jpeg_quality))
    for path, depth in zip(asset_paths(out, "bg_depth", n_bg), assets.bg_depth):
        bg_map = prior if depth is None else depth
        atomic_write_bytes(path, codecs.encode_png_gray(quantize_depth(bg_map, BG_DEPTH_BITS)))
    for path, fg in zip(asset_paths(out, "fg", n_fg), assets.fg):
        atomic_write_bytes(path, codecs.encode_png(fg))
    for path, fg in zip(asset_paths(out, "fg_mask", n_fg), assets.fg):
        atomic_write_bytes(path, codecs.encode_png_gray(fg_mask(fg)))
    if assets.distractors:
        make_dirs(Path(out) / ASSETS_DIR / "distractor")
        for path, cutout in zip(asset_paths(out, "distractor", len(assets.distractors)), assets.distractors):
            atomic_write_bytes(path, codecs.encode_png(cutout))
