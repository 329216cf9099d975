"""The generation config: every choice that changes a store's bytes, as plain values.

It is written into ``dataset.json``; a rerun with a different config on the same
``--out`` is refused unless ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from fgbg.engine.devices import parse_device
from fgbg.errors import ConfigError

Format = Literal["wds", "folder", "zip"]
BgFit = Literal["crop", "stretch"]
OnBad = Literal["fail", "skip"]

FORMATS: tuple[str, ...] = ("wds", "folder", "zip")
DEPTH_SOURCES: tuple[str, ...] = ("layered", "estimator", "estimator-per-bg")
DEPTH_NORMS: tuple[str, ...] = ("bg", "dataset", "image")
DEPTH_BITS: tuple[int, ...] = (8, 16)
# Input conventions of ONNX depth networks (--depth-preset): square side in pixels, which must be a multiple of the second number
DEPTH_PRESETS: dict[str, tuple[int, int]] = {"midas-small": (256, 1), "depth-anything": (518, 14)}
ON_BAD: tuple[str, ...] = ("fail", "skip")
BG_FITS: tuple[str, ...] = ("crop", "stretch")
STAND_ON: tuple[str, ...] = ("up", "anywhere")
MIN_SIZE, MAX_SIZE = 16, 4096  # --size bounds, in pixels: 4096^2 RGB is 50 MB per image already
BLEND_MODES: tuple[str, ...] = ("hard", "gaussian", "motion", "poisson")  # see fgbg.make.variety
BALANCES: tuple[str, ...] = ("foregrounds", "categories")
# --variety: the mix of options it turns on (explicit flags override each); distractors need a folder.
VARIETY: dict = {
    "rotate_min": -30.0, "rotate_max": 30.0, "truncate": 0.25,
    "blend": ("hard", "gaussian", "motion"), "light": 0.2, "harmonize": 0.5,
}  # fmt: skip
MIN_FG_SIZE = 4
MAX_OBJECTS = 1000  # objects per composite; instance ids are 16-bit above 255
MAX_SEED = 2**63  # seeds are 0..2**63-1 (numpy and torch both take them)
# Fields that say how a store is made, not what it holds: a resume may change them (see fgbg.store.identity);
# the device the network ran on is part of the identity, as the estimator's "compute" record.
RUN_SETTINGS: tuple[str, ...] = ("depth_batch", "depth_device")
# With --perspective and a single --scale S, the farthest fg is drawn at this fraction of S.
PERSPECTIVE_FAR_FRACTION = 0.3


@dataclass(frozen=True)
class GenerateConfig:
    size: int = 224  # width of bg, fg_bg, mask and depth, in pixels (and their height unless ``height``)
    height: int = 0  # their height in pixels; 0: ``size`` (square, as stores before --size WxH)
    fg_size: int = 112  # longest side of a prepared fg, in pixels, before --scale
    placements: int = 20  # placements per (bg, fg, flip)
    flip: bool = True  # also paste the horizontal flip of every fg
    scale_min: float = 1.0  # fg scale is drawn uniformly in [scale_min, scale_max]
    scale_max: float = 1.0
    perspective: bool = False  # fg scale follows the inverse depth at its foot point
    min_visible: float = 0.5  # a placement whose visible fraction is below this is redrawn (bgs with real depth, several objects)
    objects_min: int = 1  # objects per composite, drawn uniformly in [objects_min, objects_max]; object 1 is the key's fg
    objects_max: int = 1
    min_area: int = 0  # a placement with fewer visible pixels than this is redrawn, like --min-visible
    stand_on: str = "up"  # bgs with real depth, --perspective: feet on surfaces facing up, or anywhere
    depth: str = "layered"  # depth source, see fgbg.depth
    horizon: float = 0.4  # ground-plane prior: horizon row as a fraction of the height
    depth_bits: int = 8  # 8 or 16-bit depth PNGs
    depth_model: str = ""  # estimator sources: an .onnx file, a transformers folder or hub id
    depth_preset: str = ""  # ONNX input convention: "midas-small", "depth-anything" or "" (auto)
    depth_batch: int = 16  # images per network call (how, not what: the bytes do not depend on it)
    depth_device: str = "auto"  # where the network runs: auto, cpu, cuda, cuda:N (the resolved one is recorded)
    depth_norm: str = "bg"  # network depth scale: one per bg, one per store, or per image (the seeds')
    format: Format = "wds"
    jpeg_quality: int = 90  # fg_bg and bg JPEG quality
    bg_fit: BgFit = "crop"
    shard_size: int = 1000  # samples per wds shard (folder and zip: one shard per bg)
    seed: int = 0
    # variety (issue 27): every option applies to every object; the defaults draw nothing and change no byte
    rotate_min: float = 0.0  # each object turned by an angle drawn uniformly in [rotate_min, rotate_max] degrees (counterclockwise)
    rotate_max: float = 0.0
    truncate: float = 0.0  # an object may have up to this fraction of its mask outside the frame, in [0, 1)
    distractors: bool = False  # a --distractors folder was given (its cut-outs are the sources' "distractor")
    distractors_min: int = 1  # distractors per composite, drawn uniformly (only with a --distractors folder)
    distractors_max: int = 3
    blend: tuple[str, ...] = ("hard",)  # one mode per object, drawn uniformly from these (BLEND_MODES)
    blend_each: bool = False  # every sample is rendered once per mode of ``blend``, on the same layout
    light: float = 0.0  # photometric jitter J: brightness, contrast, saturation by [1-J, 1+J], hue by up to 18 J degrees
    harmonize: float = 0.0  # each object's colour mean and contrast moved toward the bg's by a fraction drawn in [0, P]
    balance: str = "foregrounds"  # extra objects drawn uniformly by fg, or by category first ("categories")

    def __post_init__(self) -> None:
        check_config(self)

    def scale_range(self) -> tuple[float, float]:
        """(min, max) fg scale; with perspective, (at inverse depth 0, at inverse depth 1)."""
        if self.perspective and self.scale_min == self.scale_max:
            return PERSPECTIVE_FAR_FRACTION * self.scale_max, self.scale_max
        return self.scale_min, self.scale_max

    @property
    def frame(self) -> tuple[int, int]:
        """(height, width) of every image of the store, in pixels."""
        return (self.height or self.size), self.size

    @property
    def rotates(self) -> bool:
        return (self.rotate_min, self.rotate_max) != (0.0, 0.0)

    @property
    def varied(self) -> bool:
        """Whether any variety option is on (distractors aside: they come with a folder, not the config)."""
        return self.rotates or self.truncate > 0 or self.blend != ("hard",) or self.light > 0 or self.harmonize > 0

    @property
    def several(self) -> bool:
        """Whether samples are annotated object by object (instances members, ``objects`` in the json):
        composites may hold several objects, or pasting varies (turned, truncated, blended, relit objects
        and distractors are described per object, whatever their number)."""
        return self.objects_max > 1 or self.varied or self.distractors

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GenerateConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in d.items() if k in names}
        if "blend" in given:  # json gives a list
            given["blend"] = tuple(given["blend"])
        return cls(**given)


def check_config(c: GenerateConfig) -> None:
    """Raise ConfigError, naming the flag, for an impossible config: before any work is done."""
    _check_numbers(c)
    _check_choices(c)


def _check_numbers(c: GenerateConfig) -> None:
    if not 0 <= c.seed < MAX_SEED:
        raise ConfigError(f"--seed must be a whole number in 0..2**63-1, got {c.seed}")
    height, width = c.frame
    if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
        got = f"{width}x{height}" if c.height else str(width)
        raise ConfigError(f"--size must be S or WxH with each side in {MIN_SIZE}..{MAX_SIZE} pixels, got {got}")
    if c.fg_size < MIN_FG_SIZE:
        raise ConfigError(f"--fg-size must be at least {MIN_FG_SIZE} pixels, got {c.fg_size}")
    if c.placements < 1:
        raise ConfigError(f"--placements must be at least 1, got {c.placements}")
    if not (math.isfinite(c.scale_min) and math.isfinite(c.scale_max) and 0 < c.scale_min <= c.scale_max):
        raise ConfigError(f"--scale must be finite and positive, with MIN <= MAX in MIN:MAX; got {c.scale_min:g}:{c.scale_max:g}")
    if round(c.fg_size * c.scale_max) > min(height, width):
        raise ConfigError(
            f"the fg would be larger than the bg: --fg-size {c.fg_size} x scale {c.scale_max:g}"
            f" > the bg's shorter side {min(height, width)}; lower --fg-size or --scale"
        )
    if not 0.0 <= c.min_visible <= 1.0:  # false for nan too
        raise ConfigError(f"--min-visible is a fraction of the foreground in [0, 1], got {c.min_visible}")
    if not 1 <= c.objects_min <= c.objects_max <= MAX_OBJECTS:
        raise ConfigError(
            f"--objects must be N or MIN:MAX with 1 <= MIN <= MAX <= {MAX_OBJECTS}, got {c.objects_min}:{c.objects_max}"
        )
    if c.min_area < 0:
        raise ConfigError(f"--min-area is a number of visible pixels, at least 0, got {c.min_area}")
    if not 0.0 <= c.horizon < 1.0:  # false for nan too
        raise ConfigError(f"--horizon is a fraction of the height in [0, 1), got {c.horizon}")
    if c.depth_batch < 1:
        raise ConfigError(f"--depth-batch must be at least 1, got {c.depth_batch}")
    if not 1 <= c.jpeg_quality <= 100:
        raise ConfigError(f"--jpeg-quality must be in 1..100, got {c.jpeg_quality}")
    if c.shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {c.shard_size}")
    _check_variety(c)


def _check_variety(c: GenerateConfig) -> None:
    if not (math.isfinite(c.rotate_min) and math.isfinite(c.rotate_max) and c.rotate_min <= c.rotate_max):
        raise ConfigError(f"--rotate must be DEG or MIN:MAX degrees with MIN <= MAX, got {c.rotate_min:g}:{c.rotate_max:g}")
    if not 0.0 <= c.truncate < 1.0:
        raise ConfigError(f"--truncate is the most of an object that may leave the frame, in [0, 1), got {c.truncate:g}")
    if not 0 <= c.distractors_min <= c.distractors_max <= MAX_OBJECTS:
        raise ConfigError(f"--distractor-count must be N or MIN:MAX with 0 <= MIN <= MAX <= {MAX_OBJECTS}, got {c.distractors_min}:{c.distractors_max}")
    for name, value in (("--light", c.light), ("--harmonize", c.harmonize)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {value:g}")
    if not c.blend:
        raise ConfigError(f"--blend needs at least one mode of {', '.join(BLEND_MODES)}")
    unknown = [m for m in c.blend if m not in BLEND_MODES]
    if unknown:
        raise ConfigError(f"--blend: unknown mode {unknown[0]!r}; choose from {', '.join(BLEND_MODES)}")
    if len(set(c.blend)) != len(c.blend):
        raise ConfigError(f"--blend lists a mode twice: {','.join(c.blend)}")
    if c.blend_each and len(c.blend) < 2:
        raise ConfigError(f"--blend-each renders every mode of --blend on the same layout: list two or more, got {','.join(c.blend)}")
    if c.balance not in BALANCES:
        raise ConfigError(f"--balance must be one of {', '.join(BALANCES)}, got {c.balance!r}")


def _check_choices(c: GenerateConfig) -> None:
    if c.depth not in DEPTH_SOURCES:
        raise ConfigError(f"--depth must be one of {', '.join(DEPTH_SOURCES)}, got {c.depth!r}")
    if c.depth != "layered" and not c.depth_model:
        raise ConfigError(f"--depth {c.depth} needs a model: pass --model PATH_OR_ID")
    if c.depth_norm not in DEPTH_NORMS:
        raise ConfigError(f"--depth-norm must be one of {', '.join(DEPTH_NORMS)}, got {c.depth_norm!r}")
    if c.depth_bits not in DEPTH_BITS:
        raise ConfigError(f"--depth-bits must be 8 or 16, got {c.depth_bits}")
    parse_device(c.depth_device)  # a DeviceError (a ConfigError) naming --device
    if c.depth_preset and c.depth_preset not in DEPTH_PRESETS:
        raise ConfigError(f"--depth-preset must be one of {', '.join(DEPTH_PRESETS)} (or none: the model's own), got {c.depth_preset!r}")
    if c.format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {c.format!r}")
    if c.stand_on not in STAND_ON:
        raise ConfigError(f"--stand-on must be one of {', '.join(STAND_ON)}, got {c.stand_on!r}")
    if c.bg_fit not in BG_FITS:
        raise ConfigError(f"--bg-fit must be one of {', '.join(BG_FITS)}, got {c.bg_fit!r}")
