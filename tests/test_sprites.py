"""Sprites: an fg at its pasted size, tested on its resized alpha alone, its colours resized once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.make.assets import fg_mask, load_assets
from fgbg.make.compose import flip_fg, premultiply, resize_fg
from fgbg.make.sprites import SPRITE_BYTES_PER_PIXEL, SpriteCache, placed_mask


def demo_fgs() -> list[np.ndarray]:
    bg, fg = demo_assets()
    config = GenerateConfig()
    return load_assets(bg, fg, config.size, config.fg_size).fg


def test_a_sprite_is_the_resized_fg_its_mask_from_the_alpha_resized_alone():
    fgs = demo_fgs()
    cache = SpriteCache(fgs)
    for f, fg in enumerate(fgs):
        for flip, source in enumerate((fg, flip_fg(fg))):
            for scale in np.linspace(0.3, 1.6, 14):
                w, h = max(1, round(fg.shape[1] * scale)), max(1, round(fg.shape[0] * scale))
                rgba = resize_fg(source, w, h)  # the paste's resize: all four channels at once
                sprite = cache.get(f, flip, w, h)
                assert np.array_equal(sprite.mask, fg_mask(rgba)) and np.array_equal(placed_mask(fg, flip, w, h), sprite.mask)
                assert sprite.pixels == np.count_nonzero(fg_mask(rgba))
                for got, want in zip(sprite.colour(), premultiply(rgba)):
                    assert np.array_equal(got, want)


def test_the_cache_keeps_the_most_recent_sprites_within_its_bytes():
    fgs = demo_fgs()[:3]
    one = 20 * 20 * SPRITE_BYTES_PER_PIXEL
    cache = SpriteCache(fgs, limit=3 * one)
    first = cache.get(0, 0, 20, 20)
    assert cache.get(0, 0, 20, 20) is first  # a hit
    cache.get(1, 0, 20, 20), cache.get(2, 0, 20, 20)
    cache.get(0, 0, 20, 20)  # used again: now the most recent
    cache.get(2, 1, 20, 20)  # over the limit: the least recent, (1, 0), goes
    assert list(cache.sprites) == [(2, 0, 20, 20, 0.0), (0, 0, 20, 20, 0.0), (2, 1, 20, 20, 0.0)] and cache.used == 3 * one
    assert cache.get(0, 0, 20, 20) is first


def test_threads_composing_at_once_share_the_cache_and_its_byte_count_stays_exact():
    fgs = demo_fgs()[:4]
    cache = SpriteCache(fgs, limit=40 * 30 * 30 * SPRITE_BYTES_PER_PIXEL)
    keys = [(f, flip, 20 + s, 30 - s) for f in range(4) for flip in (0, 1) for s in range(10)]

    def work(seed: int) -> None:
        for k in np.random.default_rng(seed).integers(len(keys), size=400):
            sprite = cache.get(*keys[k])
            assert sprite.mask.shape == (keys[k][3], keys[k][2])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(8)))
    assert cache.used == sum(w * h * SPRITE_BYTES_PER_PIXEL for _, _, w, h, _ in cache.sprites) <= cache.limit
