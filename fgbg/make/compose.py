"""Placement sampling and alpha compositing: pure numpy.

Shapes: bg uint8 (H, W, 3); fg uint8 (h, w, 4) RGBA; fg_bg uint8 (H, W, 3);
mask uint8 (H, W) in {0, 255}. A frame is (H, W) = (height, width) in pixels.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
from PIL import Image


PLACEMENT_TRIES = 32  # perspective foot points redrawn until the fg standing there fits the bg
VISIBLE_TRIES = 8  # placements drawn until enough of the fg is visible (bgs with real depth)


class Placement(NamedTuple):
    """Where an fg lands: top-left (x, y) and size (w, h) in pixels, and its scale.

    A turned fg (``--rotate``) is placed by its canvas (w, h) and stands where its mask does
    (``stands_at``, within the canvas); with ``--truncate`` (x, y) may lie outside the frame."""

    x: int
    y: int
    w: int
    h: int
    scale: float
    stands_at: tuple[int, int] | None = None  # the foot within the box; None: the box's bottom centre

    @property
    def foot(self) -> tuple[int, int]:
        """(x, y) where the fg stands: the bottom centre of its box, or of its mask (``stands_at``)."""
        if self.stands_at is not None:
            return self.x + self.stands_at[0], self.y + self.stands_at[1]
        return self.x + self.w // 2, self.y + self.h - 1


def sample_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on (seed, key), never on run order."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def scaled_size(fg_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    h, w = fg_hw
    return max(1, round(w * scale)), max(1, round(h * scale))


def sample_placement(
    rng: np.random.Generator, fg_hw: tuple[int, int], frame: tuple[int, int], scale_range: tuple[float, float]
) -> Placement:
    """Uniform scale in scale_range, then a uniform position keeping the fg inside the (H, W) bg:
    x in [0, W - w], y in [0, H - h]."""
    scale = float(rng.uniform(*scale_range)) if scale_range[0] < scale_range[1] else scale_range[0]
    w, h = scaled_size(fg_hw, scale)
    height, width = frame
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    return Placement(x, y, w, h, scale)


def sample_perspective_placement(
    rng: np.random.Generator,
    fg_hw: tuple[int, int],
    depth: np.ndarray,
    scale_range: tuple[float, float],
    ground_top: int = 0,
    feet: np.ndarray | None = None,
) -> Placement:
    """Foot point first, then a scale that follows the inverse depth there (near = larger).

    The fg stands exactly on its foot point, whose inverse depth sets its scale; foot points
    where the fg would leave the bg (at the top or at a side) are redrawn, so the foot is
    never shifted away from the depth its scale was read at. When nothing fits in
    PLACEMENT_TRIES draws, the fg stands at the bottom centre, at that point's scale.

    Args:
        depth: float32 (H, W) inverse depth in [0, 1] of the bg.
        scale_range: (far, near) scale: inverse depth 0 maps to far, 1 to near; the fg at
            the near end must fit the bg.
        ground_top: first row a foot may stand on (the horizon for the ground prior).
        feet: the flat indices (row * W + column) of the pixels a foot may stand on, drawn
            uniformly (e.g. the bg's surfaces that face up, see ``fgbg.depth.layered.standable``);
            None: any pixel from ``ground_top`` down.
    """
    height, width = depth.shape
    for _ in range(PLACEMENT_TRIES):
        if feet is None:
            fx = int(rng.integers(0, width))
            fy = int(rng.integers(ground_top, height))
        else:
            fy, fx = divmod(int(feet[rng.integers(len(feet))]), width)
        placement = standing_at(fx, fy, fg_hw, depth, scale_range)
        if inside(placement, (height, width)):
            return placement
    return standing_at(width // 2, height - 1, fg_hw, depth, scale_range)  # fits: w, h <= min(H, W) at any scale in range


class Footprint(NamedTuple):
    """What a placement needs of a sized (and turned) fg: its canvas (h, w), its mask's box [x, y, w, h]
    within the canvas and the point it stands on (x, y) within the canvas (see ``fgbg.make.sprites.Sprite``)."""

    shape: tuple[int, int]
    box: list[int]
    foot: tuple[int, int]


def draw_scale(rng: np.random.Generator, scale_range: tuple[float, float]) -> float:
    return float(rng.uniform(*scale_range)) if scale_range[0] < scale_range[1] else scale_range[0]


def sample_free_placement(
    rng: np.random.Generator, footprint_at, frame: tuple[int, int], scale_range: tuple[float, float], overhang: float
) -> Placement:
    """:func:`sample_placement` for turned or truncated fgs (``--rotate``, ``--truncate``): a uniform
    scale, then a uniform position of the fg's *mask* box, which may leave the frame by up to
    ``overhang`` of its width and height on each side (the caller keeps the share it allows).

    Args:
        footprint_at: scale -> :class:`Footprint` of the fg at that scale.
        frame: (H, W) of the bg.
        overhang: in [0, 1).
    """
    scale = draw_scale(rng, scale_range)
    fp = footprint_at(scale)
    (h, w), (bx, by, bw, bh) = fp.shape, fp.box
    x = _draw_between(rng, -bx - int(overhang * bw), frame[1] - bx - bw + int(overhang * bw))
    y = _draw_between(rng, -by - int(overhang * bh), frame[0] - by - bh + int(overhang * bh))
    return Placement(x, y, w, h, scale, fp.foot)


def _draw_between(rng: np.random.Generator, low: int, high: int) -> int:
    """A uniform whole number in [low, high]; their middle without a draw where high < low (a mask wider than the frame)."""
    return int(rng.integers(low, high + 1)) if low <= high else (low + high) // 2


def sample_free_perspective_placement(
    rng: np.random.Generator,
    footprint_at,
    depth: np.ndarray,
    scale_range: tuple[float, float],
    ground_top: int,
    feet: np.ndarray | None,
    overhang: float,
) -> Placement:
    """:func:`sample_perspective_placement` for turned or truncated fgs: the foot point first, the
    scale read there, then the fg's mask stands on the foot; redrawn while the mask box leaves the
    frame by more than ``overhang`` of its size (then the bottom centre, as there)."""
    height, width = depth.shape
    for attempt in range(PLACEMENT_TRIES + 1):
        if attempt == PLACEMENT_TRIES:
            fx, fy = width // 2, height - 1
        elif feet is None:
            fx, fy = int(rng.integers(0, width)), int(rng.integers(ground_top, height))
        else:
            fy, fx = divmod(int(feet[rng.integers(len(feet))]), width)
        scale = perspective_scale(depth[fy, fx], scale_range)
        fp = footprint_at(scale)
        p = Placement(fx - fp.foot[0], fy - fp.foot[1], fp.shape[1], fp.shape[0], scale, fp.foot)
        bx, by, bw, bh = fp.box
        ox, oy = int(overhang * bw), int(overhang * bh)
        if -ox <= p.x + bx and p.x + bx + bw <= width + ox and -oy <= p.y + by and p.y + by + bh <= height + oy:
            break
    return p


def depth_at(depth: np.ndarray, point: tuple[int, int]):
    """``depth`` at (x, y), or at the nearest pixel of the frame where the point lies outside it (a truncated fg's foot)."""
    height, width = depth.shape[:2]
    x, y = point
    return depth[min(max(y, 0), height - 1), min(max(x, 0), width - 1)]


def perspective_scale(inverse_depth: float, scale_range: tuple[float, float]) -> float:
    """The scale at an inverse depth in [0, 1]: linear from scale_range[0] (far) to [1] (near)."""
    far, near = scale_range
    return far + (near - far) * float(inverse_depth)


def standing_at(fx: int, fy: int, fg_hw: tuple[int, int], depth: np.ndarray, scale_range: tuple[float, float]) -> Placement:
    """The fg with its foot (bottom centre) on pixel (fx, fy), scaled by the inverse depth there."""
    scale = perspective_scale(depth[fy, fx], scale_range)
    w, h = scaled_size(fg_hw, scale)
    return Placement(fx - w // 2, fy - h + 1, w, h, scale)


def inside(p: Placement, frame: tuple[int, int]) -> bool:
    """Whether the placed fg's box lies within the bg of frame (H, W)."""
    height, width = frame
    return 0 <= p.x and p.x + p.w <= width and 0 <= p.y and p.y + p.h <= height


def resize_fg(fg: np.ndarray, w: int, h: int) -> np.ndarray:
    """(h0, w0, 4) -> (h, w, 4), resampled with premultiplied alpha (no dark fringes)."""
    if fg.shape[1] == w and fg.shape[0] == h:
        return fg
    return resize_premultiplied(premultiplied_image(fg), w, h)


def premultiplied_image(fg: np.ndarray) -> Image.Image:
    """An RGBA fg (uint8 (h0, w0, 4)) as a Pillow "RGBa" image (colours premultiplied by alpha), ready to resize."""
    return Image.fromarray(fg, "RGBA").convert("RGBa")


def resize_premultiplied(image: Image.Image, w: int, h: int) -> np.ndarray:
    """A :func:`premultiplied_image` resized to (w, h) with Lanczos: uint8 (h, w, 4) RGBA."""
    return np.asarray(image.resize((w, h), Image.LANCZOS).convert("RGBA"))


def premultiply(fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (h, w, 4) -> (a*rgb + 127, 255 - a), both uint16 (h, w, 3).

    The part of the blend that depends only on the fg, computed once per placed fg. Both
    have the blend's own shape and type: numpy multiplies them ~8x faster than a broadcast alpha.
    """
    a = np.repeat(fg[..., 3:4].astype(np.uint16), 3, axis=2)
    return a * fg[..., :3] + 127, 255 - a


def blend_premultiplied(bg: np.ndarray, premultiplied: np.ndarray, inverse_alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """``alpha_blend`` from :func:`premultiply`'s output; returns a new uint8 (H, W, 3)."""
    return blend_into(bg.copy(), premultiplied, inverse_alpha, x, y)


def blend_into(out: np.ndarray, premultiplied: np.ndarray, inverse_alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """:func:`blend_premultiplied` in place, onto ``out`` (uint8 (H, W, 3)); returns ``out``."""
    h, w = premultiplied.shape[:2]
    region = out[y : y + h, x : x + w]
    v = region.astype(np.uint16)
    v *= inverse_alpha
    v += premultiplied  # a*fg + (255-a)*bg + 127 <= 65152
    v += v >> 8  # then (v + 1) >> 8 == the old v // 255 for v <= 65152 (tested), without a division
    v += 1
    v >>= 8
    region[:] = v
    return out


def alpha_blend(bg: np.ndarray, fg: np.ndarray, x: int, y: int) -> np.ndarray:
    """Composite ``a*fg + (1-a)*bg`` with fg's top-left at (x, y), a = alpha / 255.

    Rounded to nearest: within 0.5 LSB of the float reference (tested).

    Args:
        bg: uint8 (H, W, 3).
        fg: uint8 (h, w, 4), inside the bg at (x, y).

    Returns:
        uint8 (H, W, 3), a new array.
    """
    return blend_premultiplied(bg, *premultiply(fg), x, y)


def hide(premultiplied: np.ndarray, inverse_alpha: np.ndarray, mask: np.ndarray, hidden: np.ndarray):
    """A placed fg (see :func:`premultiply`) made transparent where something nearer hides it.

    Where ``hidden``, alpha becomes 0: the blend gives the bg there exactly, and the mask 0.

    Args:
        premultiplied, inverse_alpha: :func:`premultiply`'s; mask: uint8 (h, w) in {0, 255}.
        hidden: bool (h, w).

    Returns:
        (premultiplied, inverse_alpha, visible mask): new arrays if anything is hidden, else the inputs.
    """
    if not hidden.any():
        return premultiplied, inverse_alpha, mask
    h3 = hidden[..., None]
    return (
        np.where(h3, np.uint16(127), premultiplied),  # a*fg + 127 with a = 0
        np.where(h3, np.uint16(255), inverse_alpha),
        np.where(hidden, np.uint8(0), mask),
    )


def visible_fraction(mask: np.ndarray, visible: np.ndarray) -> float:
    """Fraction of the fg's mask pixels still seen: count(visible) / count(mask) (1.0 for an empty mask)."""
    total = np.count_nonzero(mask)
    return np.count_nonzero(visible) / total if total else 1.0


def paste_mask(fg_mask: np.ndarray, x: int, y: int, frame: tuple[int, int]) -> np.ndarray:
    """An fg's binary mask (h, w) on black at (x, y): uint8 frame (H, W) in {0, 255}."""
    h, w = fg_mask.shape
    mask = np.zeros(frame, np.uint8)
    mask[y : y + h, x : x + w] = fg_mask
    return mask


def flip_fg(fg: np.ndarray) -> np.ndarray:
    """Horizontal mirror of an (h, w, C) image."""
    return np.ascontiguousarray(fg[:, ::-1])
