"""The generation config: every choice that changes a store's bytes, as plain values.

It is written into ``dataset.json``; a rerun with a different config on the same
``--out`` is refused unless ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Format = Literal["wds", "folder", "zip"]
BgFit = Literal["crop", "stretch"]
OnBad = Literal["fail", "skip"]

FORMATS: tuple[str, ...] = ("wds", "folder", "zip")
DEPTH_SOURCES: tuple[str, ...] = ("layered", "estimator", "estimator-per-bg")
DEPTH_NORMS: tuple[str, ...] = ("bg", "dataset", "image")
# With --perspective and a single --scale S, the farthest fg is drawn at this fraction of S.
PERSPECTIVE_FAR_FRACTION = 0.3


@dataclass(frozen=True)
class GenerateConfig:
    size: int = 224  # side of bg, fg_bg, mask and depth, in pixels
    fg_size: int = 112  # longest side of a prepared fg, in pixels, before --scale
    placements: int = 20  # placements per (bg, fg, flip)
    flip: bool = True  # also paste the horizontal flip of every fg
    scale_min: float = 1.0  # fg scale is drawn uniformly in [scale_min, scale_max]
    scale_max: float = 1.0
    perspective: bool = False  # fg scale follows the inverse depth at its foot point
    depth: str = "layered"  # depth source, see fgbg.depth
    horizon: float = 0.4  # ground-plane prior: horizon row as a fraction of the height
    depth_bits: int = 8  # 8 or 16-bit depth PNGs
    depth_model: str = ""  # estimator sources: an .onnx file, a transformers folder or hub id
    depth_preset: str = ""  # ONNX input convention: "midas-small", "depth-anything" or "" (auto)
    depth_batch: int = 16  # images per network call
    depth_norm: str = "bg"  # network depth scale: one per bg, one per store, or per image (the seeds')
    format: Format = "wds"
    jpeg_quality: int = 90  # fg_bg and bg JPEG quality
    bg_fit: BgFit = "crop"
    shard_size: int = 1000  # samples per wds shard (folder and zip: one shard per bg)
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self)

    def scale_range(self) -> tuple[float, float]:
        """(min, max) fg scale; with perspective, (at inverse depth 0, at inverse depth 1)."""
        if self.perspective and self.scale_min == self.scale_max:
            return PERSPECTIVE_FAR_FRACTION * self.scale_max, self.scale_max
        return self.scale_min, self.scale_max

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GenerateConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_config(c: GenerateConfig) -> None:
    """Raise ValueError with a user-facing sentence for an impossible config."""
    if c.size < 16:
        raise ValueError(f"--size must be at least 16 pixels, got {c.size}")
    if not 4 <= c.fg_size:
        raise ValueError(f"--fg-size must be at least 4 pixels, got {c.fg_size}")
    if c.placements < 1:
        raise ValueError(f"--placements must be at least 1, got {c.placements}")
    if not 0 < c.scale_min <= c.scale_max:
        raise ValueError(f"--scale must be positive with min <= max, got {c.scale_min}:{c.scale_max}")
    if round(c.fg_size * c.scale_max) > c.size:
        raise ValueError(
            f"the fg would be larger than the bg: --fg-size {c.fg_size} x scale {c.scale_max}"
            f" > --size {c.size}; lower --fg-size or --scale"
        )
    if not 0.0 <= c.horizon < 1.0:
        raise ValueError(f"--horizon is a fraction of the height in [0, 1), got {c.horizon}")
    if c.depth not in DEPTH_SOURCES:
        raise ValueError(f"--depth must be one of {', '.join(DEPTH_SOURCES)}, got {c.depth!r}")
    if c.depth != "layered" and not c.depth_model:
        raise ValueError(f"--depth {c.depth} needs a model: pass --depth-model PATH_OR_ID")
    if c.depth_norm not in DEPTH_NORMS:
        raise ValueError(f"--depth-norm must be one of {', '.join(DEPTH_NORMS)}, got {c.depth_norm!r}")
    if c.depth_batch < 1:
        raise ValueError(f"--depth-batch must be at least 1, got {c.depth_batch}")
    if c.depth_bits not in (8, 16):
        raise ValueError(f"--depth-bits must be 8 or 16, got {c.depth_bits}")
    if c.format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {c.format!r}")
    if not 1 <= c.jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be in 1..100, got {c.jpeg_quality}")
    if c.bg_fit not in ("crop", "stretch"):
        raise ValueError(f"--bg-fit must be crop or stretch, got {c.bg_fit!r}")
    if c.shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1, got {c.shard_size}")
