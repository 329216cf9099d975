"""Pictures of objects: instances in colour with boxes and names, hidden parts, and bar charts.

Pure functions from arrays to uint8 (H, W, 3) RGB images, drawn with numpy and Pillow's
ImageDraw (no plotting library). Small composites are enlarged by a whole factor first
(nearest neighbour, :func:`display_scale`) so that names stay legible beside the pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# 20 colours chosen to be told apart (Sasha Trubetskoy's "List of 20 Simple, Distinct Colors"),
# most distinct first; instance i takes PALETTE[(i - 1) % 20].
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
    ],
    np.uint8,
)  # fmt: skip
FILL_ALPHA = 0.5  # share of an instance's colour over the composite
FADE = 0.55  # share of white over the composite behind hidden parts
STRIPE = 4  # stripe period of hidden parts, in displayed pixels
DISPLAY_SIDE = 192  # composites smaller than this are enlarged towards it
LABEL_SIZE = 11  # font size of names, in displayed pixels
MAX_NAMED = 16  # a composite with more objects than this gets boxes without names (they would cover it)
BAR = (70, 130, 180)  # bar colour of the charts
INK = (0, 0, 0)
PAGE = (255, 255, 255)


def colour(i: int) -> tuple[int, int, int]:
    """The colour of instance ``i`` (1-based)."""
    return tuple(int(v) for v in PALETTE[(i - 1) % len(PALETTE)])


def ink_on(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb`` (by its luma)."""
    return INK if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else PAGE


def font(size: int = LABEL_SIZE) -> ImageFont.ImageFont:
    """Pillow's own font (scalable where FreeType is there)."""
    return ImageFont.load_default(size=size)


def display_scale(side: int, target: int = DISPLAY_SIDE) -> int:
    """The whole factor that brings a ``side`` px composite towards ``target`` px (at least 1)."""
    return max(1, math.ceil(target / side)) if side < target else 1


def enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    """(H, W[, C]) -> (H * factor, W * factor[, C]), every pixel repeated (nearest neighbour)."""
    return img if factor == 1 else np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def edges(labels: np.ndarray) -> np.ndarray:
    """bool (H, W): pixels with a non-zero label whose 4-neighbour (or the frame) holds another label."""
    padded = np.pad(labels, 1, mode="constant", constant_values=0)
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (1, 2), (2, 1)):
        differs |= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] != centre
    return differs & (labels > 0)


def palette_image(ids: np.ndarray) -> np.ndarray:
    """uint8/uint16 (H, W) ids -> uint8 (H, W, 3) colours of the ids (0 black)."""
    table = np.concatenate([[(0, 0, 0)], PALETTE])
    index = np.where(ids > 0, (ids.astype(np.int64) - 1) % len(PALETTE) + 1, 0)
    return table[index].astype(np.uint8)


def overlay_instances(rgb: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) composite and (H, W) ids -> each instance tinted in its colour, outlined in it."""
    colours = palette_image(ids).astype(np.float32)
    seen = (ids > 0)[..., None]
    out = np.where(seen, rgb * (1 - FILL_ALPHA) + colours * FILL_ALPHA, rgb)
    out = np.where(edges(ids)[..., None], colours, out)
    return np.rint(out).astype(np.uint8)


def draw_labels(img: np.ndarray, labels: list[tuple[int, list[int], str]], factor: int) -> np.ndarray:
    """Draw each instance's box ([x, y, w, h] in composite pixels) and name, in its colour.

    Args:
        img: uint8 (H * factor, W * factor, 3), the composite as displayed.
        labels: (id, box, name) per instance; empty boxes ([.., .., 0, 0]) are skipped; names only
            for up to :data:`MAX_NAMED` instances.
        factor: the display scale of ``img``.
    """
    page = Image.fromarray(img)
    draw = ImageDraw.Draw(page)
    face = font()
    width, height = page.size
    named = len(labels) <= MAX_NAMED
    for i, (x, y, w, h), name in labels:
        if w <= 0 or h <= 0:
            continue
        c = colour(i)
        x0, y0, x1, y1 = x * factor, y * factor, (x + w) * factor - 1, (y + h) * factor - 1
        draw.rectangle((x0, y0, x1, y1), outline=c, width=2 if factor > 1 or width >= 160 else 1)
        if not named:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), name, font=face)
        tw, th = right - left + 4, bottom - top + 2
        tx = min(max(x0, 0), max(width - tw, 0))
        ty = y0 - th if y0 - th >= 0 else min(y0 + 2, max(height - th, 0))  # above the box, else inside it
        draw.rectangle((tx, ty, tx + tw - 1, ty + th - 1), fill=c)
        draw.text((tx + 2 - left, ty + 1 - top), name, fill=ink_on(c), font=face)
    return np.asarray(page)


def draw_instances(rgb: np.ndarray, ids: np.ndarray, labels: list[tuple[int, list[int], str]], factor: int = 1) -> np.ndarray:
    """A composite with its instances tinted, outlined, boxed and named.

    Args:
        rgb: uint8 (S, S, 3) composite.
        ids: uint8/uint16 (S, S) instance ids (0 = background).
        labels: (id, visible box [x, y, w, h], name) per instance.
        factor: display scale (see :func:`display_scale`).

    Returns:
        uint8 (S * factor, S * factor, 3).
    """
    return draw_labels(enlarge(overlay_instances(rgb, ids), factor), labels, factor)


def draw_hidden(rgb: np.ndarray, ids: np.ndarray, full: dict[int, np.ndarray], factor: int = 1) -> np.ndarray:
    """What each object hides and shows: on the faded composite, the visible part of each object
    tinted in its colour and its hidden part (full mask minus visible) striped in it, with the
    outline of its full mask.

    Args:
        rgb: uint8 (S, S, 3) composite.
        ids: (S, S) instance ids.
        full: {id: bool (S, S) full (amodal) mask}.
        factor: display scale.

    Returns:
        uint8 (S * factor, S * factor, 3).
    """
    big_ids = enlarge(ids, factor)
    faded = enlarge(rgb, factor).astype(np.float32) * (1 - FADE) + 255 * FADE
    colours = palette_image(big_ids).astype(np.float32)
    out = np.where((big_ids > 0)[..., None], faded * (1 - FILL_ALPHA) + colours * FILL_ALPHA, faded)
    yy, xx = np.mgrid[0 : big_ids.shape[0], 0 : big_ids.shape[1]]
    stripes = ((xx + yy) // (STRIPE // 2)) % 2 == 0
    for i in sorted(full, reverse=True):  # lower ids drawn last: on top where hidden parts overlap
        whole = enlarge(full[i], factor)
        hidden = whole & (big_ids != i) & stripes
        out[hidden] = colour(i)
        out[edges(whole.astype(np.uint8))] = colour(i)
    return np.rint(out).astype(np.uint8)


def bar_chart(title: str, labels: list[str], values: list[int], width: int = 360, height: int = 220) -> np.ndarray:
    """A bar chart with each bar's value above it and its label below: uint8 (height, width, 3).

    Labels that would overlap are thinned to every k-th one.
    """
    page = Image.new("RGB", (width, height), PAGE)
    draw = ImageDraw.Draw(page)
    face, small = font(13), font(10)
    draw.text((8, 4), title, fill=INK, font=face)
    left, right, top, bottom = 10, width - 10, 40, height - 22
    draw.line((left, bottom, right, bottom), fill=INK)
    n = max(len(values), 1)
    slot = (right - left) / n
    most = max(values, default=0) or 1
    label_w = max((draw.textlength(s, font=small) for s in labels), default=0) + 4
    every = max(1, math.ceil(label_w / slot))
    for b, (label, value) in enumerate(zip(labels, values)):
        x0 = left + b * slot + max(1, slot * 0.12)
        x1 = left + (b + 1) * slot - max(1, slot * 0.12)
        y0 = min(bottom - (bottom - top) * value / most, bottom - 2)  # a count of 1 still shows
        if value:
            draw.rectangle((x0, y0, x1, bottom - 1), fill=BAR)
        centre = (x0 + x1) / 2
        text = f"{value:,}"
        fits = draw.textlength(text, font=small) <= slot + 2
        if (fits or b % every == 0) and (value or n <= 12):  # many bars: no "0" over the empty ones
            draw.text((centre, y0 - 2), text, fill=INK, font=small, anchor="md")
        if b % every == 0:
            draw.text((centre, bottom + 4), label, fill=INK, font=small, anchor="ma")
    return np.asarray(page)


def draw_outlines(rgb: np.ndarray, ids: np.ndarray, factor: int = 1, boxes: list[list[int]] = ()) -> np.ndarray:
    """A composite with each object's visible mask outlined in its colour (the frame's edge counts as
    an outline, so a truncated object shows where it leaves the frame), and ``boxes`` in white.

    Args:
        rgb: uint8 (H, W, 3) composite.
        ids: (H, W) instance ids (0 = background and distractors).
        factor: display scale (see :func:`display_scale`).
        boxes: [x, y, w, h] in composite pixels (distractors), drawn with a black edge inside the white.

    Returns:
        uint8 (H * factor, W * factor, 3).
    """
    big_ids = enlarge(ids, factor)
    out = enlarge(rgb, factor).copy()
    outline = edges(big_ids)
    out[outline] = palette_image(big_ids)[outline]
    page = Image.fromarray(out)
    draw = ImageDraw.Draw(page)
    for x, y, w, h in boxes:
        if w > 0 and h > 0:
            x0, y0, x1, y1 = x * factor, y * factor, (x + w) * factor - 1, (y + h) * factor - 1
            draw.rectangle((x0, y0, x1, y1), outline=PAGE, width=2)
            draw.rectangle((x0 + 2, y0 + 2, x1 - 2, y1 - 2), outline=INK, width=1)
    return np.asarray(page)


def captioned(img: np.ndarray, caption: str, tint: tuple[int, int, int] = PAGE) -> np.ndarray:
    """``img`` (uint8 (H, W, 3)) under a one-line caption on ``tint``: uint8 (H + LABEL_SIZE + 5, W, 3)."""
    strip = Image.new("RGB", (img.shape[1], LABEL_SIZE + 5), tint)
    ImageDraw.Draw(strip).text((3, 2), caption, fill=ink_on(tint), font=font())
    return np.concatenate([np.asarray(strip), img], axis=0)


def titled(img: np.ndarray, title: str, size: int = 13) -> np.ndarray:
    """``img`` (uint8 (H, W, 3)) under a title line in black on white: uint8 (H + size + 8, W', 3), W' wide
    enough for the title (the image left-aligned on white)."""
    face = font(size)
    width = max(img.shape[1], math.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=face)) + 8)
    strip = Image.new("RGB", (width, size + 8), PAGE)
    ImageDraw.Draw(strip).text((4, 3), title, fill=INK, font=face)
    return stack([np.asarray(strip), img])


def stack(pages: list[np.ndarray]) -> np.ndarray:
    """uint8 (h_i, w_i, 3) pictures one under another, left-aligned on white: uint8 (sum h_i, max w_i, 3)."""
    width = max(p.shape[1] for p in pages)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=PAGE[0]) for p in pages])
