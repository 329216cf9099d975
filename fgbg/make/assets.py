"""Read and prepare the user's bg and fg folders.

bg: any image -> uint8 (H, W, 3) RGB, EXIF orientation applied, centre-cropped to the W:H
aspect (or stretched) and resized to the dataset's frame (H, W). An optional sidecar ``NAME.depth.png`` next to it gives
its inverse depth (near = bright).

fg: any image -> uint8 (h, w, 4) RGBA trimmed to its alpha box, longest side = fg_size.
Foregrounds without alpha on a plain background (white-background photos) are keyed from
their border colour with soft edges.

A user's bad file never raises a traceback: it becomes a :class:`BadFile` line. What can
go on (a symlink that leads nowhere, a tiny image upscaled) becomes a one-line warning.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fgbg.errors import UserError
from fgbg.make.categories import Categories, from_files
from fgbg.rooms.settings import read_set

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DEPTH_SIDECAR = ".depth.png"
ALPHA_THRESHOLD = 128  # fg_mask = alpha >= 128
MAX_PIXELS = 100_000_000  # larger images (or headers claiming them) are refused before decoding
TINY_FG_FRACTION = 4  # warn when an fg's longest side is under fg_size / 4: upscaled, it looks blocky
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's modes of 16-bit grey files

# Keying: a border is "plain" when at most this fraction of its pixels differ from its
# median colour by more than KEY_FAR (max over channels, 0..255).
KEY_BUSY_FRACTION = 0.05
KEY_NEAR, KEY_FAR = 16.0, 48.0  # alpha ramps from 0 at KEY_NEAR to 1 at KEY_FAR


class BadInput(UserError):
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
    bg_depth_set: dict | None = None  # what made the sidecars, where the bg folder says (rendered rooms)
    fg_folder: str = ""  # the --fg folder's name: a flat folder's one category
    loose_fg: list[Path] = field(default_factory=list)  # images beside --fg's category folders: left out, reported
    distractors: list[np.ndarray] = field(default_factory=list)  # uint8 (h, w, 4): --distractors, prepared as fgs
    distractor_sources: list[Source] = field(default_factory=list)

    @property
    def categories(self) -> Categories:
        return from_files([s.file for s in self.fg_sources], self.fg_folder)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; depth sidecars excluded."""
    return find_images(folder)[0]


def find_images(folder: Path) -> tuple[list[Path], list[str]]:
    """(image files directly in ``folder`` sorted by name, one warning per broken symlink skipped).

    Depth sidecars are excluded. A symlink that is dangling, points back to itself, or
    points to a folder containing it is skipped with a warning instead of silently.

    Raises:
        BadInput: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder}: not a folder; give a folder of images")
    images, skipped = [], []
    for path in sorted(folder.iterdir()):
        problem = broken_link(path, folder) if path.is_symlink() else None
        if problem:
            skipped.append(f"{path}: {problem}; skipped")
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.lower().endswith(DEPTH_SIDECAR):
            images.append(path)
    return images, skipped


def find_backgrounds(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """([(image file, its source name)], warnings) of a ``--bg`` folder: its images, named by file name."""
    images, skipped = find_images(folder)
    return [(p, p.name) for p in images], skipped


def find_foregrounds(folder: Path) -> tuple[list[tuple[Path, str]], list[Path], list[str]]:
    """([(image file, its source name)], loose images, warnings) of a ``--fg`` folder, flat or one
    sub-folder per category.

    Only images directly in ``folder`` (sub-folders without images, or the ``masks/`` that
    ``fgbg cutout`` writes beside its cut-outs, ignored): a flat folder, named by file name.
    Sub-folders of images: one category per sub-folder, in sorted order, each image named
    ``SUB/FILE`` (see :mod:`fgbg.make.categories`); images directly in ``folder`` beside them
    belong to no category and come back as loose, for the caller to refuse or skip.

    Raises:
        BadInput: ``folder`` is not a folder, or (without loose images) a category sub-folder has no images.
    """
    images, skipped = find_images(folder)
    subs = sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith("."))
    if images:
        subs = [s for s in subs if list_images(s) and not is_cutout_masks(s, images)]
    if not subs:
        return [(p, p.name) for p in images], [], skipped
    named = []
    for sub in subs:
        found, sub_skipped = find_images(sub)
        if not found:
            raise BadInput(
                f"{sub}: a category folder with no images (looked for {', '.join(IMAGE_SUFFIXES)}); add its images or remove it"
            )
        named += [(p, f"{sub.name}/{p.name}") for p in found]
        skipped += sub_skipped
    return named, images, skipped


def is_cutout_masks(sub: Path, cutouts: list[Path]) -> bool:
    """``sub`` is the ``masks/`` that ``fgbg cutout`` writes beside ``cutouts`` (a mask per cut-out, same names)."""
    return sub.name == "masks" and {p.name for p in list_images(sub)} <= {p.name for p in cutouts}


def loose_fg_text(fg_dir: Path, loose: list[Path]) -> str:
    """One line naming the images beside ``fg_dir``'s category folders."""
    names = ", ".join(p.name for p in loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
    return f"{fg_dir}: {names}: {'an image' if len(loose) == 1 else 'images'} beside the category sub-folders, in no category"


def broken_link(link: Path, folder: Path) -> str | None:
    """Why the symlink ``link`` in ``folder`` leads nowhere usable, or None when it is fine."""
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError:
        return f"a symlink to {os.readlink(link)}, which does not exist"
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "a symlink loop (it leads back to itself)"
    except OSError as e:
        return "a symlink loop (it leads back to itself)" if e.errno == errno.ELOOP else f"a symlink that cannot be followed ({e.strerror})"
    here = folder.resolve()
    if target.is_dir() and (target == here or target in here.parents):
        return f"a symlink to {target}, a folder that contains it (a loop)"
    return None


def read_image(path: Path) -> tuple[Image.Image, str]:
    """Decode a file fully, EXIF orientation applied. Returns (image, sha256 of the bytes).

    Raises:
        BadInput: unreadable, empty, not an image, truncated or corrupt, or over MAX_PIXELS.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read the file ({e.strerror}); check its permissions") from None
    if not data:
        raise BadInput("the file is empty; remove it or replace it with the real image")
    img = open_image(data)
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"the image is truncated or corrupt ({e}); re-export it or remove it") from None
    return img, hashlib.sha256(data).hexdigest()


def open_image(data: bytes) -> Image.Image:
    """Read an image's header (not its pixels); BadInput if it is not an image or claims too many pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS applies instead
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadInput("not an image Pillow can read; remove it or convert it to PNG or JPEG") from None
    except Image.DecompressionBombError as e:  # Pillow refuses twice its own limit before we see the size
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise BadInput(too_large(f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too many pixels")) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"the image is truncated or corrupt ({e}); re-export it or remove it") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise BadInput(too_large(f"{w}x{h} = {w * h / 1e6:.0f} MP"))
    return img


def too_large(claimed: str) -> str:
    return (
        f"the image claims {claimed}, more than fgbg reads ({MAX_PIXELS // 1_000_000} MP; a damaged header"
        " or a decompression bomb?); downscale it or remove it"
    )


def to_uint8(img: Image.Image) -> Image.Image:
    """16-bit integer images (Pillow modes I;16*, I) and float ones scaled to 8 bits (Pillow's convert would clip).

    The scale follows the file's bit depth, never its values: a 16-bit image is value / 65535
    even when every value is small.
    """
    if img.mode in SIXTEEN_BIT_MODES:
        a = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(a * 255.0 / 65535.0), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        a = np.asarray(img)
        return Image.fromarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8), "L")
    return img


def frame_hw(frame: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a frame given as (H, W), or as S for a square (S, S)."""
    return (frame, frame) if isinstance(frame, int) else (int(frame[0]), int(frame[1]))


def aspect_crop(img: Image.Image, frame: int | tuple[int, int]) -> Image.Image:
    """The largest centred part of ``img`` with the frame's W:H aspect (a square's: min(w, h) on a side)."""
    height, width = frame_hw(frame)
    w, h = img.size
    if w * height > h * width:  # wider than the frame: keep the full height
        cw, ch = (h * width + height // 2) // height, h
    else:
        cw, ch = w, (w * height + width // 2) // width
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def fit_frame(img: Image.Image, frame: int | tuple[int, int], fit: str) -> Image.Image:
    """Centre-crop to the frame's aspect (``crop``) or not (``stretch``), then resize to the frame (H, W) (S: S x S)."""
    height, width = frame_hw(frame)
    if fit == "crop":
        img = aspect_crop(img, frame)
    return img.resize((width, height), Image.BICUBIC, reducing_gap=3.0)


def prepare_bg(img: Image.Image, frame: int | tuple[int, int], fit: str = "crop") -> np.ndarray:
    """Any-mode image -> uint8 (H, W, 3) RGB for a frame (H, W), or (S, S, 3) for a side S."""
    img = to_uint8(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        flat = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(flat, img)
    return np.asarray(fit_frame(img.convert("RGB"), frame, fit))


def depth_unit(depth: Image.Image | np.ndarray) -> np.ndarray:
    """A depth sidecar's values on [0, 1]: float32 (H, W).

    The scale follows the file's bit depth, never its values: 16-bit (Pillow modes I;16 and I,
    or a uint16 array) is value / 65535 even when every value is <= 255; 8-bit is value / 255;
    float ("F", float arrays) is taken as already on [0, 1]. A colour map keeps its first channel.
    """
    if isinstance(depth, Image.Image):
        top = 65535.0 if depth.mode in SIXTEEN_BIT_MODES else 1.0 if depth.mode == "F" else 255.0
        if top == 255.0 and depth.mode not in ("L", "LA", "RGB", "RGBA"):
            depth = depth.convert("RGB")  # palette, 1-bit, CMYK ...: values, not indices
        a = np.asarray(depth)
    else:
        a = np.asarray(depth)
        top = 65535.0 if a.dtype in (np.uint16, np.int32, np.uint32) else 255.0 if a.dtype == np.uint8 else 1.0
    if a.ndim == 3:
        a = a[..., 0]
    return (a.astype(np.float32) / np.float32(top)).clip(0, 1)


def prepare_bg_depth(img: Image.Image | np.ndarray, frame: int | tuple[int, int], fit: str = "crop") -> np.ndarray:
    """A depth sidecar (8 or 16-bit grey, near = bright) -> float32 (H, W) in [0, 1], cropped or
    stretched as its bg is (:func:`fit_frame`)."""
    height, width = frame_hw(frame)
    f = Image.fromarray(depth_unit(img), "F")
    if fit == "crop":
        f = aspect_crop(f, frame)
    return np.asarray(f.resize((width, height), Image.BILINEAR), dtype=np.float32).clip(0, 1)


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
    from scipy import ndimage  # here, not at the top: every spawned worker imports this module, few key

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
    return fit_fg(trim_to_alpha(to_rgba(img)), fg_size)


def fit_fg(trimmed: np.ndarray, fg_size: int) -> np.ndarray:
    """A trimmed fg (h, w, 4) -> longest side fg_size; BadInput if no pixel is opaque enough to mask."""
    rgba = fit_longest(trimmed, fg_size)
    if not (rgba[..., 3] >= ALPHA_THRESHOLD).any():
        raise BadInput("the foreground is almost fully transparent (no pixel with alpha >= 128); remove it")
    return rgba


def tiny_fg_warning(path: Path, trimmed_hw: tuple[int, int], fg_size: int) -> str | None:
    """A one-line warning when an fg's alpha box is so small that fitting it to fg_size blows it up."""
    h, w = trimmed_hw
    if max(h, w) * TINY_FG_FRACTION >= fg_size:
        return None
    factor = fg_size / max(h, w)
    return f"{path}: the foreground is only {w}x{h} pixels inside its alpha box; upscaled {factor:.3g}x to --fg-size {fg_size}, it will look blocky"


def fg_mask(rgba: np.ndarray) -> np.ndarray:
    """uint8 (h, w) in {0, 255}: where alpha >= 128."""
    return np.where(rgba[..., 3] >= ALPHA_THRESHOLD, 255, 0).astype(np.uint8)


def load_assets(bg_dir: Path, fg_dir: Path, frame: int | tuple[int, int], fg_size: int, bg_fit: str = "crop") -> Assets:
    """Read and prepare both folders, the bgs at ``frame`` (H, W) (or S: S x S); every bad file becomes a BadFile, none raises.

    Raises:
        BadInput: a folder is missing, or has no image files at all.
    """
    assets = Assets([], [], [], [], [], [], [], fg_folder=Path(fg_dir).resolve().name)
    height, width = frame_hw(frame)
    wanted = str(width) if width == height else f"{width}x{height}"
    found = {}
    found["background"], skipped = find_backgrounds(bg_dir)
    found["foreground"], assets.loose_fg, skipped_fg = find_foregrounds(fg_dir)
    assets.warnings += skipped + skipped_fg
    for kind, folder in (("background", bg_dir), ("foreground", fg_dir)):
        if not found[kind]:
            raise BadInput(f"{folder}: no {kind} images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    for path, _ in found["background"]:
        try:
            img, sha = read_image(path)
            if img.size[0] < width or img.size[1] < height:
                assets.warnings.append(f"{path}: {img.size[0]}x{img.size[1]} is smaller than {wanted}, upscaled")
            bg = prepare_bg(img, frame, bg_fit)
            depth = _read_sidecar(path, frame, bg_fit)
        except BadInput as e:
            assets.bad.append(BadFile(e.path or path, str(e)))
            continue
        assets.bg.append(bg)
        assets.bg_depth.append(depth)
        assets.bg_sources.append(Source(path.name, sha))
    if any(d is not None for d in assets.bg_depth):
        assets.bg_depth_set = read_sidecar_set(bg_dir)
    assets.fg, assets.fg_sources = read_cutouts(found["foreground"], fg_size, assets.bad, assets.warnings)
    return assets


def read_cutouts(found: list[tuple[Path, str]], fg_size: int, bad: list[BadFile], warnings: list[str]) -> tuple[list[np.ndarray], list[Source]]:
    """Cut-outs (:func:`find_foregrounds`' (path, name) pairs) prepared as fgs are: uint8 (h, w, 4),
    trimmed to their alpha, longest side ``fg_size``; with their sources. Bad files and warnings are appended."""
    cutouts, sources = [], []
    for path, name in found:
        try:
            img, sha = read_image(path)
            trimmed = trim_to_alpha(to_rgba(img))
            cutout = fit_fg(trimmed, fg_size)
        except BadInput as e:
            bad.append(BadFile(path, str(e)))
            continue
        tiny = tiny_fg_warning(path, trimmed.shape[:2], fg_size)
        if tiny:
            warnings.append(tiny)
        cutouts.append(cutout)
        sources.append(Source(name, sha))
    return cutouts, sources


def load_distractors(folder: Path, fg_dir: Path, fg_size: int, bad: list[BadFile], warnings: list[str]) -> tuple[list[np.ndarray], list[Source]]:
    """The ``--distractors`` cut-outs, read with ``--fg``'s rules (sub-folders and all; their categories unused).

    Raises:
        BadInput: the folder is missing, is ``--fg`` itself, or has no image files.
    """
    if not Path(folder).is_dir():
        raise BadInput(f"--distractors {folder}: no such folder")
    if Path(folder).resolve() == Path(fg_dir).resolve():
        raise BadInput(f"--distractors {folder}: is the --fg folder; distractors are other cut-outs, pasted in no mask")
    found, loose, skipped = find_foregrounds(Path(folder))
    warnings += skipped
    found += [(path, path.name) for path in loose]  # no categories here: loose images are distractors too
    if not found:
        raise BadInput(f"--distractors {folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return read_cutouts(found, fg_size, bad, warnings)


def read_sidecar_set(bg_dir: Path) -> dict | None:
    """What made the folder's depth sidecars, when ``fgbg rooms`` did (its rooms.json): the generator,
    renderer, seed, size and depth scale; None for sidecars from anywhere else.

    Raises:
        UserError: a rooms.json that cannot be read.
    """
    recorded = read_set(bg_dir)
    if recorded is None:
        return None
    keep = ("generator", "fgbg_version", "renderer", "renderer_detail", "seed", "size", "count")
    frame = {"height": recorded["height"]} if recorded.get("height") else {}  # a set of W x H rooms
    return {**{k: recorded.get(k) for k in keep}, **frame, "scale_m": (recorded.get("depth") or {}).get("scale_m")}


def _read_sidecar(bg_path: Path, frame: int | tuple[int, int], fit: str) -> np.ndarray | None:
    sidecar = bg_path.with_name(bg_path.stem + DEPTH_SIDECAR)
    if not sidecar.exists():
        return None
    try:
        img, _ = read_image(sidecar)
    except BadInput as e:
        raise BadInput(str(e), sidecar) from None
    return prepare_bg_depth(img, frame, fit)



def demo_assets() -> tuple[Path, Path]:
    """(bg folder, fg folder) of the demo images shipped inside the package."""
    root = Path(str(resources.files("fgbg") / "demo_assets"))
    return root / "bg", root / "fg"
