"""Variety for pasted objects: rotation, blending, light; pure functions on arrays.

The operations a scene composes per object (issue 27), and one ``draw_*`` helper per option
that takes the sample's generator and returns plain floats, ints and strings (json-ready).
Nothing here records anything: the caller draws, records the draw, then applies it.
Masks never come from here: an object's mask is its (rotated) sprite's alpha >= 128
(``fgbg.make.assets.fg_mask``); blending and light change colours only.

Shapes and units: a sprite is uint8 (h, w, 4) straight (not premultiplied) RGBA; a bg is
uint8 (H, W, 3) RGB; (x, y) is the sprite's top-left in bg pixels and may lie partly or
wholly outside the frame; angles are degrees, counterclockwise as seen on screen (as PIL's
``Image.rotate``); lengths and sigmas are pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from fgbg.config import BLEND_MODES
from fgbg.make.assets import ALPHA_THRESHOLD
from fgbg.make.compose import alpha_blend, blend_into
GAUSSIAN_SIGMA_PX = (0.5, 2.0)  # feather widths drawn for `gaussian`
MOTION_LENGTH_PX = (3, 9)  # streak lengths drawn for `motion`, inclusive
HUE_DEGREES_PER_JITTER = 18.0  # --light J shifts hue by up to J * 18 degrees


# ---------------------------------------------------------------- rotation


def rotate_rgba(rgba: np.ndarray, degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The sprite rotated about its centre onto a canvas that holds the whole rotated box.

    Colour is resampled with premultiplied alpha (premultiply, bilinear ``cv2.warpAffine``,
    un-premultiply), so transparent pixels never bleed dark into the edge. The canvas has
    the size ``PIL.Image.rotate(expand=True)`` gives. Quarter turns are exact (``np.rot90``),
    and an angle that is a multiple of 360 returns ``rgba`` itself.

    Args:
        rgba: uint8 (h, w, 4) straight RGBA.
        degrees: counterclockwise angle.

    Returns:
        (rotated uint8 (h2, w2, 4) straight RGBA, (dx, dy)): place the rotated sprite at
        (x + dx, y + dy) to keep the rotation centre where it was (within half a pixel).
        Its mask is ``fg_mask(rotated)`` (alpha >= 128).

    >>> sprite = np.zeros((2, 4, 4), np.uint8); sprite[0, 3] = 255
    >>> turned, moved = rotate_rgba(sprite, 90)
    >>> turned.shape, moved, int(turned[0, 0, 3])
    ((4, 2, 4), (1, -1), 255)
    """
    h, w = rgba.shape[:2]
    angle = float(degrees) % 360.0
    if angle % 90 == 0:
        turned = rgba if angle == 0 else np.ascontiguousarray(np.rot90(rgba, int(angle // 90)))
    else:
        turned = _warp_premultiplied(rgba, _inverse_rotation(w, h, angle))
    return turned, ((w - turned.shape[1]) // 2, (h - turned.shape[0]) // 2)


def rotate_alpha(alpha: np.ndarray, degrees: float) -> np.ndarray:
    """uint8 (h2, w2): the alpha of ``rotate_rgba(rgba, degrees)`` from the alpha plane alone
    (the warp treats every channel alike), so a rotated object's mask is known before its colour.

    >>> rotate_alpha(np.full((2, 4), 255, np.uint8), 90).shape
    (4, 2)
    """
    h, w = alpha.shape
    angle = float(degrees) % 360.0
    if angle % 90 == 0:
        return alpha if angle == 0 else np.ascontiguousarray(np.rot90(alpha, int(angle // 90)))
    matrix, canvas = _inverse_rotation(w, h, angle)
    warped = cv2.warpAffine(alpha.astype(np.float32), matrix, canvas, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.convertScaleAbs(warped)


def _inverse_rotation(w: int, h: int, angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """(cv2 matrix from canvas pixel to sprite pixel (2, 3) float64, canvas (w2, h2)).

    The canvas size and the map are PIL's ``rotate(expand=True)``, which works in pixel-edge
    coordinates; cv2 addresses pixel centres, hence the half-pixel shifts.
    """
    radians = -math.radians(angle)
    cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
    corners = [
        (cos * (x - w / 2) + sin * (y - h / 2) + w / 2, -sin * (x - w / 2) + cos * (y - h / 2) + h / 2)
        for x, y in ((0, 0), (w, 0), (w, h), (0, h))
    ]
    w2 = math.ceil(max(c[0] for c in corners)) - math.floor(min(c[0] for c in corners))
    h2 = math.ceil(max(c[1] for c in corners)) - math.floor(min(c[1] for c in corners))
    # sprite edge coordinate = R (canvas edge coordinate - canvas centre) + sprite centre
    rotation = np.array([[cos, sin], [-sin, cos]])
    shift = np.array([w / 2, h / 2]) - rotation @ np.array([w2 / 2, h2 / 2])
    shift += rotation @ np.array([0.5, 0.5]) - 0.5  # pixel centres on both sides
    return np.hstack([rotation, shift[:, None]]), (w2, h2)


def _warp_premultiplied(rgba: np.ndarray, inverse: tuple[np.ndarray, tuple[int, int]]) -> np.ndarray:
    """Bilinear warp of straight RGBA through premultiplied float colour; uint8 RGBA out."""
    matrix, canvas = inverse
    warped = cv2.warpAffine(
        premultiplied_float(rgba), matrix, canvas, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    *colour, alpha = cv2.split(warped)
    gain = np.where(alpha > 0.5, 255 / np.maximum(alpha, 0.5), 0).astype(np.float32)  # no colour where alpha rounds to 0
    return cv2.convertScaleAbs(cv2.merge([plane * gain for plane in colour] + [alpha]))  # rounded, clipped to [0, 255]


def premultiplied_float(rgba: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 4) straight RGBA -> float32 (h, w, 4): (r a, g a, b a) / 255 and a, all in [0, 255]."""
    *colour, alpha = cv2.split(rgba.astype(np.float32))  # planes: numpy is slow on a last axis of 3
    opacity = alpha / 255
    return cv2.merge([plane * opacity for plane in colour] + [alpha])


# ---------------------------------------------------------------- blending


def blend(mode: str, bg_rgb: np.ndarray, sprite_rgba: np.ndarray, x: int, y: int, params: dict) -> np.ndarray:
    """Paste the sprite onto the bg with one of BLEND_MODES; only the colours it returns differ.

    ``hard`` is fgbg's alpha paste, ``gaussian`` feathers the alpha (``params["sigma"]`` px),
    ``motion`` streaks colour and alpha (``params["length"]`` px at ``params["angle"]``
    degrees), ``poisson`` clones the object's gradients into the bg (``cv2.seamlessClone``).
    The sprite may stand partly outside the frame. Pixels beyond the sprite's box widened
    by the blur's reach are the bg's, exactly. The object's mask stays ``fg_mask(sprite)``.

    Args:
        mode: one of BLEND_MODES.
        bg_rgb: uint8 (H, W, 3).
        sprite_rgba: uint8 (h, w, 4) straight RGBA; pixels hidden by something nearer should
            have alpha 0.
        x, y: the sprite's top-left in the bg.
        params: what ``draw_blend_params(mode, rng)`` drew.

    Returns:
        The composite, a new uint8 (H, W, 3).

    >>> bg = np.zeros((3, 3, 3), np.uint8); dot = np.full((1, 1, 4), 255, np.uint8)
    >>> blend("hard", bg, dot, 1, 1, {})[..., 0].tolist()
    [[0, 0, 0], [0, 255, 0], [0, 0, 0]]
    """
    if mode not in BLENDS:
        raise ValueError(f"unknown blend mode {mode!r}: choose from {', '.join(BLEND_MODES)}")
    return BLENDS[mode](bg_rgb, sprite_rgba, x, y, **params)


def draw_blend_mode(rng: np.random.Generator, modes: tuple[str, ...]) -> str:
    """One of ``modes``, uniformly (one draw)."""
    return modes[int(rng.integers(len(modes)))]


def draw_blend_params(mode: str, rng: np.random.Generator) -> dict:
    """The parameters ``blend(mode, ...)`` needs, drawn from ``rng``: a json-ready dict.

    ``gaussian``: sigma (px, 2 decimals) uniform in GAUSSIAN_SIGMA_PX; ``motion``: length (int
    px) uniform in MOTION_LENGTH_PX and angle (degrees in [0, 180), 1 decimal); ``hard`` and
    ``poisson``: nothing (no draw).

    >>> draw_blend_params("motion", np.random.default_rng(0))
    {'length': 8, 'angle': 48.6}
    """
    if mode == "gaussian":
        return {"sigma": round(float(rng.uniform(*GAUSSIAN_SIGMA_PX)), 2)}
    if mode == "motion":
        low, high = MOTION_LENGTH_PX
        return {"length": int(rng.integers(low, high + 1)), "angle": round(float(rng.uniform(0, 180)), 1)}
    if mode in BLENDS:
        return {}
    raise ValueError(f"unknown blend mode {mode!r}: choose from {', '.join(BLEND_MODES)}")


def hard_paste(bg_rgb: np.ndarray, sprite_rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """fgbg's alpha paste (``fgbg.make.compose.alpha_blend``) of the sprite's in-frame part."""
    region = overlap(bg_rgb.shape, sprite_rgba.shape, x, y)
    if region is None:
        return bg_rgb.copy()
    frame, sprite = region
    return alpha_blend(bg_rgb, sprite_rgba[sprite], frame[1].start, frame[0].start)


def gaussian_paste(bg_rgb: np.ndarray, sprite_rgba: np.ndarray, x: int, y: int, sigma: float) -> np.ndarray:
    """The sprite with its alpha blurred by a Gaussian of ``sigma`` px (``cv2.GaussianBlur``).

    The feathered edge spreads up to 3 sigma beyond the alpha. The object keeps its colours;
    where it was transparent, the edge shows the same Gaussian's average of the object's
    nearby colours, never whatever colour the transparent pixels happen to hold.
    """
    reach = math.ceil(3 * sigma)
    padded = _pad(sprite_rgba, reach)
    layer = cv2.GaussianBlur(premultiplied_float(padded), (2 * reach + 1,) * 2, sigma, borderType=cv2.BORDER_CONSTANT)
    # on the object: its own colour under the feathered alpha; beside it, the colour is the blurred
    # premultiplied colour over the feathered alpha, so premultiplied it is the blurred one itself
    own = cv2.cvtColor(padded, cv2.COLOR_RGBA2RGB).astype(np.float32)
    own *= layer[..., 3:] * np.float32(1 / 255)
    np.copyto(layer[..., :3], own, where=padded[..., 3:] > 0)
    return _paste_premultiplied(bg_rgb, layer, x - reach, y - reach)


def motion_paste(bg_rgb: np.ndarray, sprite_rgba: np.ndarray, x: int, y: int, length: int, angle: float) -> np.ndarray:
    """The sprite streaked along a line of ``length`` px at ``angle`` degrees: colour and alpha
    filtered together, premultiplied (``cv2.filter2D`` with a line kernel)."""
    kernel = line_kernel(length, angle)
    reach = kernel.shape[0] // 2
    layer = cv2.filter2D(premultiplied_float(_pad(sprite_rgba, reach)), -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return _paste_premultiplied(bg_rgb, layer, x - reach, y - reach)


def line_kernel(length: int, angle: float) -> np.ndarray:
    """float32 (k, k), k = the odd number >= length: a line of ``length`` px through the centre
    at ``angle`` degrees (counterclockwise from the x axis), summing to 1."""
    k = length | 1
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, (k - length) // 2 : (k - length) // 2 + length] = 1
    rotation = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (k, k), flags=cv2.INTER_LINEAR)
    return kernel / kernel.sum()


def poisson_paste(bg_rgb: np.ndarray, sprite_rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """Gradient-domain paste (``cv2.seamlessClone``, NORMAL_CLONE) of the object's pixels.

    The cloned region is alpha >= 128 grown by one pixel: seamlessClone takes the colour of its
    region's outer ring from the bg, and the object's own pixels must all be solved. Objects at
    or over the frame edge, which seamlessClone refuses, are cloned into the bg padded by
    reflection, then cut back to the frame. Outside the region's box, the bg is unchanged.
    """
    padded = _pad(sprite_rgba, 2)
    region = cv2.dilate((padded[..., 3] >= ALPHA_THRESHOLD).astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    if not region.any():
        return bg_rgb.copy()
    bx, by, bw, bh = cv2.boundingRect(region)
    left, top = x - 2 + bx, y - 2 + by  # the region's box in the bg
    height, width = bg_rgb.shape[:2]
    margin = max(0, -left, -top, left + bw - width, top + bh - height)
    if margin:
        margin += 1
    canvas = cv2.copyMakeBorder(bg_rgb, margin, margin, margin, margin, cv2.BORDER_REFLECT) if margin else bg_rgb
    centre = (left + margin + bw // 2, top + margin + bh // 2)
    cloned = cv2.seamlessClone(np.ascontiguousarray(fill_transparent(padded)), canvas, region, centre, cv2.NORMAL_CLONE)
    return cloned[margin : margin + height, margin : margin + width].copy() if margin else cloned


BLENDS = {"hard": hard_paste, "gaussian": gaussian_paste, "motion": motion_paste, "poisson": poisson_paste}


def fill_transparent(rgba: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3): the colour, where alpha is 0 replaced by the nearest visible pixel's
    (``scipy.ndimage.distance_transform_edt``), so blurs and gradients never see it."""
    transparent = rgba[..., 3] == 0
    if not transparent.any() or transparent.all():
        return rgba[..., :3]
    rows, cols = ndimage.distance_transform_edt(transparent, return_distances=False, return_indices=True)
    return rgba[rows, cols, :3]


def _pad(rgba: np.ndarray, reach: int) -> np.ndarray:
    """``reach`` transparent pixels around the sprite."""
    return cv2.copyMakeBorder(rgba, reach, reach, reach, reach, cv2.BORDER_CONSTANT, value=0)


def overlap(frame_shape: tuple, sprite_shape: tuple, x: int, y: int) -> tuple[tuple, tuple] | None:
    """(frame slices, sprite slices) of the part of a sprite at (x, y) inside the frame, or None."""
    height, width = frame_shape[:2]
    h, w = sprite_shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


def _paste_premultiplied(bg_rgb: np.ndarray, layer: np.ndarray, x: int, y: int) -> np.ndarray:
    """``colour + (1 - alpha/255) * bg`` for a float32 (h, w, 4) premultiplied layer at (x, y), through
    fgbg's integer blend (``fgbg.make.compose.blend_into``) with the alpha rounded to a whole level:
    within 1 of the float blend, 3x faster than it on a sprite."""
    out = bg_rgb.copy()
    region = overlap(out.shape, layer.shape, x, y)
    if region is None:
        return out
    frame, part = region
    inside = layer[part]
    premultiplied = (inside[..., :3] * 255 + 127).astype(np.uint16)  # a*fg + 127, as compose.premultiply has it
    inverse_alpha = np.repeat((255.5 - inside[..., 3:]).astype(np.uint16), 3, axis=2)
    return blend_into(out, premultiplied, inverse_alpha, frame[1].start, frame[0].start)


# ---------------------------------------------------------------- light


def jitter_light(rgba: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float) -> np.ndarray:
    """The sprite's colour re-lit, in this order: brightness scales RGB; contrast scales the distance
    from the object's mean grey; saturation scales the distance from each pixel's grey (ITU-R 601
    luma, ``cv2.COLOR_RGB2GRAY``); hue turns the HSV hue by ``hue`` degrees. The three linear steps
    are one colour matrix (``cv2.transform``, clipped to [0, 255] once, where torchvision's
    ColorJitter clips after each: the same wherever no step leaves the range); each alone matches
    PIL's ImageEnhance (tested). Factors of 1 and a hue that is a multiple of 360 change nothing;
    alpha is never touched.

    Args:
        rgba: uint8 (h, w, 4) straight RGBA.
        brightness, contrast, saturation: factors >= 0.
        hue: degrees.

    Returns:
        uint8 (h, w, 4): a new array, or ``rgba`` itself when nothing would change.

    >>> red = np.array([[[255, 0, 0, 255]]], np.uint8)
    >>> jitter_light(red, 1, 1, 1, 120)[0, 0].tolist()
    [0, 255, 0, 255]
    """
    hue = float(hue) % 360.0
    if brightness == contrast == saturation == 1 and hue == 0:
        return rgba
    colour = _colour(rgba)
    rgb = colour.astype(np.float32)
    if (brightness, contrast, saturation) != (1, 1, 1):
        rgb = cv2.transform(rgb, light_matrix(colour, rgba[..., 3], brightness, contrast, saturation))
        rgb = np.clip(rgb, 0, 255, out=rgb)
    if hue:
        hsv = cv2.cvtColor(rgb * np.float32(1 / 255), cv2.COLOR_RGB2HSV)  # float: hue in degrees [0, 360)
        turn = hsv[..., 0]
        turn += hue
        turn[turn >= 360] -= 360
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * np.float32(255)
    return cv2.merge([*cv2.split(cv2.convertScaleAbs(rgb)), rgba[..., 3]])  # rounded, clipped to [0, 255]


LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as cv2.COLOR_RGB2GRAY


def light_matrix(colour: np.ndarray, alpha: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """float32 (3, 4): brightness, then contrast about the object's mean grey (weighted by ``alpha``),
    then saturation about each pixel's grey, as one affine map of RGB for ``cv2.transform``.

    Saturation keeps a grey pixel grey (its rows sum to 1), so the contrast's offset passes through it.
    """
    weights = alpha.astype(np.float32)
    grey = float((cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY) * weights).sum() / max(weights.sum(), 1)) if contrast != 1 else 0.0
    saturate = saturation * np.eye(3, dtype=np.float32) + (1 - saturation) * np.outer(np.ones(3, np.float32), LUMA)
    linear = saturate * (contrast * brightness)
    offset = np.full((3, 1), (1 - contrast) * brightness * grey, np.float32)
    return np.hstack([linear, offset]).astype(np.float32)


def draw_light(rng: np.random.Generator, jitter: float) -> dict:
    """``jitter_light``'s keyword arguments for ``--light J``: brightness, contrast and saturation
    uniform in [1-J, 1+J], hue uniform in [-18J, 18J] degrees; 4 draws, rounded to 4 decimals.

    >>> draw_light(np.random.default_rng(0), 0.0)
    {'brightness': 1.0, 'contrast': 1.0, 'saturation': 1.0, 'hue': 0.0}
    """
    factors = {name: round(float(rng.uniform(1 - jitter, 1 + jitter)), 4) for name in ("brightness", "contrast", "saturation")}
    most = jitter * HUE_DEGREES_PER_JITTER
    return {**factors, "hue": round(float(rng.uniform(-most, most)), 4) + 0.0}  # + 0.0: no -0.0 in the json


def harmonize(rgba: np.ndarray, bg_rgb: np.ndarray, x: int, y: int, fraction: float) -> np.ndarray:
    """The sprite's colour moved toward the bg under its box, per channel, by ``fraction``:
    its mean and its standard deviation (contrast) go ``fraction`` of the way to the bg's.

    The object's statistics are over its mask (alpha >= 128), the bg's over the in-frame
    part of the sprite's box at (x, y). Alpha is never touched. An object of one flat
    colour keeps its (zero) contrast and only moves its mean.

    Args:
        rgba: uint8 (h, w, 4) straight RGBA; bg_rgb: uint8 (H, W, 3).
        x, y: the sprite's top-left in the bg.
        fraction: in [0, 1]; 0 changes nothing, 1 gives the bg's mean and std (up to
            rounding and clipping to [0, 255]).

    Returns:
        uint8 (h, w, 4): a new array, or ``rgba`` itself when nothing would change.
    """
    region = overlap(bg_rgb.shape, rgba.shape, x, y)
    mask = (rgba[..., 3] >= ALPHA_THRESHOLD).astype(np.uint8)
    if fraction == 0 or region is None or not mask.any():
        return rgba
    colour = _colour(rgba)
    mean, std = (s.ravel() for s in cv2.meanStdDev(colour, mask=mask))
    under_mean, under_std = (s.ravel() for s in cv2.meanStdDev(np.ascontiguousarray(bg_rgb[region[0]])))
    target_mean = mean + fraction * (under_mean - mean)
    target_std = std + fraction * (under_std - std)
    gain = np.divide(target_std, std, out=np.ones(3), where=std > 0)
    # one linear map per channel: a lookup table over the 256 values
    table = np.rint(np.clip((np.arange(256)[:, None] - mean) * gain + target_mean, 0, 255)).astype(np.uint8)
    return cv2.merge([cv2.LUT(colour, table[None]), rgba[..., 3]])


def draw_harmonize(rng: np.random.Generator, most: float) -> float:
    """``--harmonize P``'s fraction: uniform in [0, P], 4 decimals (one draw)."""
    return round(float(rng.uniform(0, most)), 4)


def draw_rotation(rng: np.random.Generator, low: float, high: float) -> float:
    """``--rotate``'s angle: uniform in [low, high] degrees, 2 decimals (one draw)."""
    return round(float(rng.uniform(low, high)), 2) + 0.0


def _colour(rgba: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3): the RGB planes of (h, w, 4), contiguous (``cv2``: numpy is slow at this)."""
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


def _with_colour(rgba: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """A new uint8 RGBA: ``rgb`` (float, any range) clipped to [0, 255] and rounded, beside ``rgba``'s alpha."""
    return cv2.merge([cv2.convertScaleAbs(np.clip(rgb, 0, 255)), rgba[..., 3]])
