"""Fgs at the sizes they are pasted (sprites), and one bounded cache of them.

A placement is tested on the fg's resized alpha alone (its mask, pixels and box); the colours are
resized once, for the placement kept. Both come from Pillow's Lanczos resampling of the fg with
premultiplied alpha (:func:`fgbg.make.compose.resize_fg`): the alpha resized alone is exactly
the alpha of the whole resize (Pillow resamples every channel with the same kernel; tested), so a
sprite's mask is the pasted fg's mask, bytes and all.

:func:`placed_mask` gives a placed fg's mask by the sprites' own two steps (:meth:`Source.alpha`,
:func:`mask_of`): the exports call it to rebuild a single-object sample's whole mask from the
store's prepared fg, so no export re-implements the paste.

Shapes: an fg is uint8 (h0, w0, 4) RGBA; a sprite is (h, w).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from fgbg.make.assets import ALPHA_THRESHOLD
from fgbg.make.compose import flip_fg, premultiplied_image, premultiply, resize_premultiplied
from fgbg.make.variety import rotate_alpha, rotate_rgba
from fgbg.masks import box

# Bytes a sprite holds per pixel: mask (uint8) and shown (bool), then the resized RGBA (uint8 x 4)
# once its colour is asked for. The premultiplied colour (12 bytes a pixel) is made at each paste
# of a resized fg: 0.1 ms, a third of a resize, and a cache of the same bytes holds 2.3x the sprites.
SPRITE_BYTES_PER_PIXEL = 2 + 4
TURNED_KEPT = 16  # turned sprites kept: a sample's objects and distractors, between their draw and their paste
CACHE_BYTES = 96 << 20  # per renderer (one per worker process): ~2,500 sprites of 80 x 80


class Source:
    """One fg (or its mirror), ready to be resized: its premultiplied image and its alpha, made once."""

    def __init__(self, rgba: np.ndarray) -> None:
        self.rgba = rgba  # uint8 (h0, w0, 4)
        self._premultiplied: Image.Image | None = None
        self._alpha: Image.Image | None = None
        self._colour: tuple[np.ndarray, np.ndarray] | None = None

    def alpha(self, w: int, h: int) -> np.ndarray:
        """uint8 (h, w): the fg's alpha as :meth:`rgba` at (w, h) has it, resized alone."""
        if (h, w) == self.rgba.shape[:2]:
            return self.rgba[..., 3]
        if self._alpha is None:
            self._alpha = Image.fromarray(np.ascontiguousarray(self.rgba[..., 3]), "L")
        return np.asarray(self._alpha.resize((w, h), Image.LANCZOS))

    def sized(self, w: int, h: int) -> np.ndarray:
        """uint8 (h, w, 4): the fg resized to (w, h), as :func:`fgbg.make.compose.resize_fg` gives it."""
        if (h, w) == self.rgba.shape[:2]:
            return self.rgba
        if self._premultiplied is None:
            self._premultiplied = premultiplied_image(self.rgba)
        return resize_premultiplied(self._premultiplied, w, h)

    def colour(self) -> tuple[np.ndarray, np.ndarray]:
        """The fg at its own size premultiplied and its inverse alpha (:func:`premultiply`), made once."""
        if self._colour is None:
            self._colour = premultiply(self.rgba)
        return self._colour


def mask_of(alpha: np.ndarray) -> np.ndarray:
    """uint8 (h, w) in {0, 255}: where alpha >= 128 (the fg's mask, :func:`fgbg.make.assets.fg_mask`)."""
    return np.where(alpha >= ALPHA_THRESHOLD, np.uint8(255), np.uint8(0))


def placed_mask(fg: np.ndarray, flip: int, w: int, h: int) -> np.ndarray:
    """uint8 (h, w) in {0, 255}: the mask of fg ``fg`` (uint8 (h0, w0, 4)), mirrored if ``flip``,
    pasted at size (w, h); hidden parts included. What :class:`Sprite` holds for it."""
    return mask_of(Source(flip_fg(fg) if flip else fg).alpha(w, h))


class Sprite:
    """An fg at its placed size, turned by ``angle`` degrees (``--rotate``): its mask, and its colour
    once asked for (:meth:`colour`, :meth:`rgba`). A turned sprite is the resized fg turned on a
    canvas that holds it (:func:`fgbg.make.variety.rotate_rgba`); its mask is the turned alpha >= 128."""

    __slots__ = ("source", "size", "angle", "upright", "mask", "shown", "pixels", "box", "_rgba")

    def __init__(self, source: Source, w: int, h: int, angle: float = 0.0, upright: "Sprite | None" = None) -> None:
        self.source = source
        self.size, self.angle = (w, h), angle  # the fg's resized (w, h), before turning
        self.upright = upright  # the same fg unturned, whose resized colour a turned sprite reuses
        # the alpha resized alone equals the whole resize's (module docstring): take whichever is made
        alpha = upright._rgba[..., 3] if upright is not None and upright._rgba is not None else source.alpha(w, h)
        self.mask = mask_of(rotate_alpha(alpha, angle) if angle else alpha)  # uint8 (h', w') in {0, 255}
        self.shown = self.mask > 0  # bool (h', w')
        self.pixels = int(np.count_nonzero(self.shown))
        self.box = box(self.shown)  # [x, y, w, h] of the mask within the sprite
        self._rgba: np.ndarray | None = None

    def rgba(self) -> np.ndarray:
        """uint8 (h', w', 4) straight RGBA: the sized (and turned) fg, made once; never written to."""
        if self._rgba is None:
            sized = self.source.sized(*self.size) if self.upright is None else self.upright.rgba()
            self._rgba = rotate_rgba(sized, self.angle)[0] if self.angle else sized
        return self._rgba

    def foot(self) -> tuple[int, int]:
        """(x, y) in the sprite where it stands: the middle of the lowest row of its mask (of the
        sprite's bottom row where the mask is empty)."""
        h, w = self.mask.shape
        if not self.pixels:
            return w // 2, h - 1
        bottom = self.box[1] + self.box[3] - 1
        columns = np.flatnonzero(self.shown[bottom])
        return int(columns[len(columns) // 2]), bottom

    def colour(self) -> tuple[np.ndarray, np.ndarray]:
        """The sized fg premultiplied and its inverse alpha (:func:`premultiply`); resized once, premultiplied
        at every paste (but at the fg's own size: then once, by its :class:`Source`)."""
        if not self.angle and self.mask.shape == self.source.rgba.shape[:2]:
            return self.source.colour()
        return premultiply(self.rgba())


class SpriteCache:
    """The most recently used sprites, keyed (fg, flip, w, h, angle), up to ``limit`` bytes (least recent out first).

    Safe to share between the threads that compose samples (the labelling pipeline's)."""

    def __init__(self, fgs: list[np.ndarray], limit: int = CACHE_BYTES) -> None:
        self.sources = [(Source(fg), Source(flip_fg(fg))) for fg in fgs]
        self.limit, self.used = limit, 0
        self.sprites: OrderedDict[tuple[int, int, int, int, float], Sprite] = OrderedDict()
        self.turned: OrderedDict[tuple[int, int, int, int, float], Sprite] = OrderedDict()  # the last few turned sprites
        self._lock = threading.Lock()

    def get(self, fg: int, flip: int, w: int, h: int, angle: float = 0.0) -> Sprite:
        """Fg ``fg`` (mirrored if ``flip``) at (w, h), turned by ``angle`` degrees.

        A turned sprite is made from the cached upright one (its resize reused) and kept only among
        the few most recent turned ones (a drawn angle is rarely drawn again: it would crowd out the
        upright sprites, which are)."""
        if angle:
            return self._turned(fg, flip, w, h, angle)
        key = (fg, flip, w, h, 0.0)
        with self._lock:
            sprite = self.sprites.get(key)
            if sprite is not None:
                self.sprites.move_to_end(key)
                return sprite
        made = Sprite(self.sources[fg][flip], w, h)  # outside the lock: other threads go on meanwhile
        with self._lock:
            sprite = self.sprites.setdefault(key, made)
            if sprite is made:
                self.used += made.mask.size * SPRITE_BYTES_PER_PIXEL
                while self.used > self.limit and len(self.sprites) > 1:
                    _, old = self.sprites.popitem(last=False)
                    self.used -= old.mask.size * SPRITE_BYTES_PER_PIXEL
            return sprite

    def _turned(self, fg: int, flip: int, w: int, h: int, angle: float) -> Sprite:
        key = (fg, flip, w, h, angle)
        with self._lock:
            sprite = self.turned.get(key)
        if sprite is None:
            sprite = Sprite(self.sources[fg][flip], w, h, angle, upright=self.get(fg, flip, w, h))
            with self._lock:
                sprite = self.turned.setdefault(key, sprite)
                while len(self.turned) > TURNED_KEPT:
                    self.turned.popitem(last=False)
        return sprite
