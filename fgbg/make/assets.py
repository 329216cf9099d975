"""Read and prepare the user's bg and fg folders.

bg: any image -> uint8 (S, S, 3) RGB, EXIF orientation applied, centre-cropped (or
stretched) to the dataset size. An optional sidecar ``NAME.depth.png`` next to it gives
its inverse depth (near = bright).

fg: any image -> uint8 (h, w, 4) RGBA trimmed to its alpha box, longest side = fg_size.
Foregrounds without alpha on a plain background (white-background photos) are keyed from
their border colour with soft edges.

A user's bad file never raises a traceback: it becomes a :class:`BadFile` line.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DEPTH_SIDECAR = ".depth.png"
ALPHA_THRESHOLD = 128  # fg_mask = alpha >= 128

# Keying: a border is "plain" when at most this fraction of its pixels differ from its
# median colour by more than KEY_FAR (max over channels, 0..255).
KEY_BUSY_FRACTION = 0.05
KEY_NEAR, KEY_FAR = 16.0, 48.0  # alpha ramps from 0 at KEY_NEAR to 1 at KEY_FAR


class BadInput(Exception):
    """A user's file that cannot be used; ``str()`` is the reason and what to do."""

    def __init__(self, reason: str, path: Path | None = None):
        super().__init__(reason)
        self.path = path


@dataclass(frozen=True)
class BadFile:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Source:
    """Where a prepared asset came from: file name and sha256 of its bytes."""

    file: str
    sha256: str


@dataclass
class Assets:
    """Prepared inputs, indexed as in keys (b000 = bg[0], f000 = fg[0])."""

    bg: list[np.ndarray]  # uint8 (S, S, 3)
    bg_depth: list[np.ndarray | None]  # float32 (S, S) in [0, 1] from a sidecar, or None
    fg: list[np.ndarray]  # uint8 (h, w, 4), longest side = fg_size
    bg_sources: list[Source]
    fg_sources: list[Source]
    bad: list[BadFile]
    warnings: list[str]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; depth sidecars excluded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder}: not a folder; give a folder of images")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.lower().endswith(DEPTH_SIDECAR)
    )


def read_image(path: Path) -> tuple[Image.Image, str]:
    """Decode a file fully, EXIF orientation applied. Returns (image, sha256 of the bytes)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read the file ({e.strerror}); check its permissions") from None
    if not data:
        raise BadInput("the file is empty; remove it or replace it with the real image")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        img = ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise BadInput("not an image Pillow can read; remove it or convert it to PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"the image is truncated or corrupt ({e}); re-export it or remove it") from None
    return img, hashlib.sha256(data).hexdigest()


def to_uint8(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images scaled to 8 bits (Pillow's convert would clip)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(np.rint(a * 255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        a = np.asarray(img)
        return Image.fromarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8), "L")
    return img


def fit_square(img: Image.Image, size: int, fit: str) -> Image.Image:
    """Centre-crop to a square (``crop``) or not (``stretch``), then resize to size x size."""
    if fit == "crop":
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return img.resize((size, size), Image.BICUBIC, reducing_gap=3.0)


def prepare_bg(img: Image.Image, size: int, fit: str = "crop") -> np.ndarray:
    """Any-mode image -> uint8 (size, size, 3) RGB."""
    img = to_uint8(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        flat = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(flat, img)
    return np.asarray(fit_square(img.convert("RGB"), size, fit))


def prepare_bg_depth(img: Image.Image, size: int, fit: str = "crop") -> np.ndarray:
    """A depth sidecar (8 or 16-bit grey, near = bright) -> float32 (size, size) in [0, 1]."""
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., 0]
    top = 65535.0 if a.dtype != np.uint8 and a.max() > 255 else 255.0
    f = Image.fromarray((a.astype(np.float32) / top).clip(0, 1), "F")
    if fit == "crop":
        w, h = f.size
        s = min(w, h)
        f = f.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(f.resize((size, size), Image.BILINEAR), dtype=np.float32).clip(0, 1)


def key_plain_background(rgb: np.ndarray) -> np.ndarray:
    """Alpha for an RGB cut-out photographed on a plain background.

    Args:
        rgb: uint8 (H, W, 3).

    Returns:
        uint8 (H, W) alpha: 0 on the background (the border colour, connected to the
        border), a soft ramp on its edge, 255 on the object.

    Raises:
        BadInput: the border is not near-uniform, so there is nothing safe to key.
    """
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    colour = np.median(border, axis=0)
    if np.mean(np.abs(border - colour).max(axis=1) > KEY_FAR) > KEY_BUSY_FRACTION:
        raise BadInput(
            "has no transparency and its background is not plain, so it cannot be cut out;"
            " save it as a PNG with transparency, or photograph it on a plain background"
        )
    distance = np.abs(rgb.astype(np.float32) - colour).max(axis=2)
    near = distance < KEY_FAR
    labels, _ = ndimage.label(near)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge_labels[edge_labels > 0])
    ramp = np.clip((distance - KEY_NEAR) / (KEY_FAR - KEY_NEAR), 0.0, 1.0)
    return np.where(background, np.rint(ramp * 255), 255).astype(np.uint8)


def to_rgba(img: Image.Image) -> np.ndarray:
    """Any-mode image -> uint8 (H, W, 4), keying a plain background when there is no alpha."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        return np.asarray(img.convert("RGBA"))
    rgb = np.asarray(to_uint8(img).convert("RGB"))
    return np.dstack([rgb, key_plain_background(rgb)])


def trim_to_alpha(rgba: np.ndarray) -> np.ndarray:
    """Crop (H, W, 4) to the bounding box of alpha > 0; BadInput if fully transparent."""
    rows = np.flatnonzero(rgba[..., 3].any(axis=1))
    cols = np.flatnonzero(rgba[..., 3].any(axis=0))
    if rows.size == 0:
        raise BadInput("the foreground is fully transparent, so there is nothing to paste; remove it")
    return rgba[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fit_longest(rgba: np.ndarray, side: int) -> np.ndarray:
    """Resize (h, w, 4) so its longest side is ``side``, keeping aspect (premultiplied alpha)."""
    h, w = rgba.shape[:2]
    f = side / max(h, w)
    new = (max(1, round(w * f)), max(1, round(h * f)))
    img = Image.fromarray(rgba, "RGBA").convert("RGBa")
    return np.asarray(img.resize(new, Image.LANCZOS).convert("RGBA"))


def prepare_fg(img: Image.Image, fg_size: int) -> np.ndarray:
    """Any-mode image -> uint8 (h, w, 4), trimmed, longest side = fg_size."""
    rgba = fit_longest(trim_to_alpha(to_rgba(img)), fg_size)
    if not (rgba[..., 3] >= ALPHA_THRESHOLD).any():
        raise BadInput("the foreground is almost fully transparent (no pixel with alpha >= 128); remove it")
    return rgba


def fg_mask(rgba: np.ndarray) -> np.ndarray:
    """uint8 (h, w) in {0, 255}: where alpha >= 128."""
    return np.where(rgba[..., 3] >= ALPHA_THRESHOLD, 255, 0).astype(np.uint8)


def load_assets(bg_dir: Path, fg_dir: Path, size: int, fg_size: int, bg_fit: str = "crop") -> Assets:
    """Read and prepare both folders; every bad file becomes a BadFile, none raises.

    Raises:
        BadInput: a folder is missing, or has no image files at all.
    """
    assets = Assets([], [], [], [], [], [], [])
    for kind, folder in (("background", bg_dir), ("foreground", fg_dir)):
        if not list_images(folder):
            raise BadInput(f"{folder}: no {kind} images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    for path in list_images(bg_dir):
        try:
            img, sha = read_image(path)
            if min(img.size) < size:
                assets.warnings.append(f"{path}: {img.size[0]}x{img.size[1]} is smaller than {size}, upscaled")
            bg = prepare_bg(img, size, bg_fit)
            depth = _read_sidecar(path, size, bg_fit)
        except BadInput as e:
            assets.bad.append(BadFile(e.path or path, str(e)))
            continue
        assets.bg.append(bg)
        assets.bg_depth.append(depth)
        assets.bg_sources.append(Source(path.name, sha))
    for path in list_images(fg_dir):
        try:
            img, sha = read_image(path)
            fg = prepare_fg(img, fg_size)
        except BadInput as e:
            assets.bad.append(BadFile(path, str(e)))
            continue
        assets.fg.append(fg)
        assets.fg_sources.append(Source(path.name, sha))
    return assets


def _read_sidecar(bg_path: Path, size: int, fit: str) -> np.ndarray | None:
    sidecar = bg_path.with_name(bg_path.stem + DEPTH_SIDECAR)
    if not sidecar.exists():
        return None
    try:
        img, _ = read_image(sidecar)
    except BadInput as e:
        raise BadInput(str(e), sidecar) from None
    return prepare_bg_depth(img, size, fit)



def demo_assets() -> tuple[Path, Path]:
    """(bg folder, fg folder) of the demo images shipped inside the package."""
    root = Path(str(resources.files("fgbg") / "demo_assets"))
    return root / "bg", root / "fg"
