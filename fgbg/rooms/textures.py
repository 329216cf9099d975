"""The texture bank of a set of rooms: procedural patterns, and crops of the user's photos.

A bank is made once per set from its seed (and the photos), and every room's surfaces pick
layers from it (:class:`fgbg.rooms.scene.MaterialPicker`), so a room costs no texture work.
Every layer tiles seamlessly (the renderers repeat it over a surface): the procedural ones
are periodic by construction, a photo crop is mirrored into a 2 x 2 block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fgbg.make.assets import BadInput, find_images, read_image
from fgbg.rooms.scene import CEILING, FLOOR, FURNITURE, WALL, MaterialPicker

TEXTURE_PX = 128  # side of every layer
VARIANTS = 6  # layers per procedural family
PHOTO_CROPS = 48  # layers cut from the user's photos
PHOTO_LONG_SIDE = 768  # photos are shrunk to this before cropping (a crop is 128 px anyway)
FAMILIES_BY_KIND = {FLOOR: ("tiles", "wood"), WALL: ("plaster", "stripes"), CEILING: ("plaster",), FURNITURE: ("wood", "plaster")}


@dataclass(frozen=True)
class TextureBank:
    """uint8 (N, T, T, 3) layers, and which layers each surface kind uses."""

    layers: np.ndarray
    picker: MaterialPicker
    sources: list[dict]  # the photos the crops come from: {"file", "sha256"}


def periodic_noise(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """float32 (size, size) noise with a 1/f**beta spectrum, zero mean, unit std, tiling seamlessly."""
    spectrum = np.fft.rfft2(rng.standard_normal((size, size)))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum /= f**beta
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(size, size))
    return (noise / noise.std()).astype(np.float32)


def plaster(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey plaster: low-contrast blotches and grain. float32 (size, size, 3) in [0, 1]."""
    grey = 0.85 + 0.05 * periodic_noise(rng, size, 1.6) + 0.02 * periodic_noise(rng, size, 0.5)
    return _grey(grey)


def tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    """Square tiles, each a slightly different shade, with darker grout lines."""
    n = int(rng.choice([2, 4, 8]))
    cell = size // n
    shade = 0.8 + 0.08 * rng.standard_normal((n, n))
    grey = np.kron(shade, np.ones((cell, cell))) + 0.03 * periodic_noise(rng, size, 1.0)
    y, x = np.mgrid[:size, :size]
    grout = max(1, cell // 16)
    grey[(x % cell < grout) | (y % cell < grout)] *= 0.55
    return _grey(grey)


def wood(rng: np.random.Generator, size: int) -> np.ndarray:
    """Planks along x with a wavy grain, brown."""
    planks = int(rng.choice([2, 4]))
    y = np.mgrid[:size, :size][0] / size
    warp = 0.04 * periodic_noise(rng, size, 2.0)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (int(rng.integers(6, 14)) * y + warp * 8))
    plank_shade = 0.85 + 0.1 * rng.standard_normal(planks)
    grey = plank_shade[(y * planks).astype(int) % planks] * (0.8 + 0.2 * grain) + 0.03 * periodic_noise(rng, size, 0.8)
    brown = np.array([0.78, 0.56, 0.36], np.float32)
    return np.clip(grey[..., None] * brown, 0, 1).astype(np.float32)


def stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Wallpaper: vertical stripes of two shades, with a little paper noise."""
    n = int(rng.choice([4, 8, 16]))
    light, dark = 0.9, 0.9 - rng.uniform(0.08, 0.25)
    x = np.arange(size)
    col = np.where((x * n // size) % 2 == 0, light, dark)
    grey = np.repeat(col[None, :], size, axis=0) + 0.02 * periodic_noise(rng, size, 0.8)
    return _grey(grey)


PROCEDURAL = {"plaster": plaster, "tiles": tiles, "wood": wood, "stripes": stripes}


def _grey(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def load_photos(folder: Path) -> tuple[list[Image.Image], list[dict]]:
    """The photos of ``--textures``, RGB, shrunk to at most PHOTO_LONG_SIDE, in name order.

    Raises:
        BadInput: the folder is not a folder, has no images, or one cannot be read (one line).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"--textures {folder}: not a folder; give a folder of photos (JPEG, PNG ...) to cut textures from")
    paths, _ = find_images(folder)
    if not paths:
        raise BadInput(f"--textures {folder}: no images found; give a folder of photos (JPEG, PNG ...) to cut textures from")
    photos, sources = [], []
    for path in paths:
        try:
            img, sha = read_image(path)
        except BadInput as e:
            raise BadInput(f"--textures {path}: {e}") from None
        img = img.convert("RGB")
        img.thumbnail((PHOTO_LONG_SIDE, PHOTO_LONG_SIDE), Image.BILINEAR)
        photos.append(img)
        sources.append({"file": path.name, "sha256": sha})
    return photos, sources


def photo_crop(rng: np.random.Generator, photo: Image.Image, size: int) -> np.ndarray:
    """A random square crop (20-60% of the short side), size/2 px, mirrored into a seamless size x size tile."""
    w, h = photo.size
    side = max(8, int(min(w, h) * rng.uniform(0.2, 0.6)))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    half = np.asarray(photo.crop((x, y, x + side, y + side)).resize((size // 2, size // 2), Image.BILINEAR), np.float32) / 255
    top = np.concatenate([half, half[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0)


def texture_bank(seed: int, photos: list[Image.Image] | None = None, sources: list[dict] | None = None) -> TextureBank:
    """The bank of the set ``seed``: VARIANTS layers of each procedural family, then PHOTO_CROPS crops
    of ``photos`` when given (floors, walls and furniture then use the crops; ceilings stay plaster)."""
    layers, family_layers = [], {}
    for f, (name, make) in enumerate(PROCEDURAL.items()):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1_000_003, f]))
        family_layers[name] = list(range(len(layers), len(layers) + VARIANTS))
        layers += [make(rng, TEXTURE_PX) for _ in range(VARIANTS)]
    kinds = {kind: sorted({i for fam in fams for i in family_layers[fam]}) for kind, fams in FAMILIES_BY_KIND.items()}
    is_photo = dict.fromkeys(kinds, False)
    if photos:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1_000_033]))
        crops = [photo_crop(rng, photos[int(rng.integers(len(photos)))], TEXTURE_PX) for _ in range(PHOTO_CROPS)]
        crop_layers = list(range(len(layers), len(layers) + len(crops)))
        layers += crops
        for kind in (FLOOR, WALL, FURNITURE):
            kinds[kind], is_photo[kind] = crop_layers, True
    return TextureBank(to_uint8(np.stack(layers)), MaterialPicker(kinds, is_photo), list(sources or []))
