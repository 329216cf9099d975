"""Held-out composites made another way than fgbg's: the yardstick of issue 27's proof.

    python benchmarks/independent_compositor.py --bg BG_DIR --fg FG_DIR --out OUT [--size 96 | --size 640x480]
        [--count 200] [--seed 0] [--modes hard,feathered,relit,feathered+relit+rotated]

A model trained on fgbg's composites may learn how fgbg pastes (its edges, its colours) instead of
what objects look like. Scoring it on composites pasted by different code shows whether it did.
This compositor shares no code with ``fgbg`` (it imports nothing from it): its own background
crop and resize (PIL, Lanczos), its own foreground resize and rotation (PIL, bicubic, on
premultiplied alpha), its own feathered alpha (``scipy.ndimage.gaussian_filter``), its own
re-lighting (a per-channel gain toward the background's colour under the object) and its own
masks: the placed, resized (and rotated) alpha >= 128, whatever the blending did to the colours.

Each sample i draws everything from ``numpy.random.default_rng([seed, i])``, the same draws in
every mode, so sample i shows the same background, foreground, flip, size and position (relative
to the room left for it) in each mode; a mode only decides which draws it applies:

    hard                      alpha paste
    feathered                 alpha blurred by a Gaussian, sigma in [1, 2] px
    relit                     colour scaled per channel toward the bg under the box, strength in [0.3, 0.7]
    feathered+relit+rotated   rotated by [-30, 30] degrees, then relit, then feathered

Output, per mode: OUT/MODE/{bg,composite,mask}/NNNNN.png (bg RGB as the model's input,
composite RGB, mask 0/255) and OUT/MODE/manifest.json (settings and every sample's draws).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

MODES = ("hard", "feathered", "relit", "feathered+relit+rotated")
BG_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
SIDE_OF_FRAME = (0.35, 0.7)  # the object's longest side, as a share of the frame's shorter side
SIGMA_PX = (1.0, 2.0)
RELIGHT_STRENGTH = (0.3, 0.7)
ANGLE_DEGREES = 30.0
ALPHA_MASKED = 128  # mask = alpha >= this


class UsageError(Exception):
    """Bad input a user can fix: one line, exit 2, nothing written."""


def parse_size(text: str) -> tuple[int, int]:
    """'96' -> (96, 96); '640x480' -> (640, 480): (width, height) in pixels."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"--size {text!r}: give S or WxH, positive whole pixels (e.g. 96 or 640x480)")
    return (int(parts[0]), int(parts[-1]))


def parse_modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"--modes {text!r}: choose from {', '.join(MODES)}")
    return modes


def list_backgrounds(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in BG_SUFFIXES and not p.name.endswith(".depth.png"))


def list_foregrounds(folder: Path) -> list[Path]:
    """Every PNG under the folder (category sub-folders included), in a stable order."""
    return sorted(folder.rglob("*.png"), key=lambda p: p.relative_to(folder).as_posix())


def load_background(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3): the photo centre-cropped to the frame's aspect, then resized (Lanczos)."""
    image = read(path, "RGB")
    width, height = size
    w, h = image.size
    if w * height > h * width:  # too wide: keep the middle columns
        keep = round(h * width / height)
        image = image.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h))
    else:
        keep = round(w * height / width)
        image = image.crop((0, (h - keep) // 2, w, (h - keep) // 2 + keep))
    return np.asarray(image.resize(size, Image.LANCZOS))


def load_foreground(path: Path) -> Image.Image:
    """The cut-out, premultiplied ('RGBa'), cropped to where its alpha is not 0."""
    image = read(path, "RGBA")
    box = image.getchannel("A").getbbox()
    if box is None:
        raise UsageError(f"{path}: fully transparent, nothing to paste; remove it")
    return image.crop(box).convert("RGBa")


def read(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, Image.DecompressionBombError) as e:
        raise UsageError(f"{path}: not a readable image ({e})") from None


def draw(rng: np.random.Generator, n_bg: int, n_fg: int) -> dict:
    """Every choice of one sample, in a fixed order, whatever the mode."""
    return {
        "bg": int(rng.integers(n_bg)),
        "fg": int(rng.integers(n_fg)),
        "flip": bool(rng.integers(2)),
        "side": float(rng.uniform(*SIDE_OF_FRAME)),
        "u": float(rng.uniform()),
        "v": float(rng.uniform()),
        "angle": round(float(rng.uniform(-ANGLE_DEGREES, ANGLE_DEGREES)), 2),
        "sigma": round(float(rng.uniform(*SIGMA_PX)), 3),
        "relight": round(float(rng.uniform(*RELIGHT_STRENGTH)), 3),
    }


def shaped_sprite(fg: Image.Image, choice: dict, size: tuple[int, int], rotate: bool) -> np.ndarray:
    """uint8 (h, w, 4) straight RGBA: the cut-out flipped, resized and maybe rotated, fitting the frame."""
    if choice["flip"]:
        fg = fg.transpose(Image.FLIP_LEFT_RIGHT)
    longest = max(1, round(choice["side"] * min(size)))
    fg = fg.resize(fitted(fg.size, longest), Image.BICUBIC)
    if rotate:
        fg = fg.rotate(choice["angle"], Image.BICUBIC, expand=True)
        if fg.width > size[0] or fg.height > size[1]:
            fg = fg.resize(fitted(fg.size, min(size)), Image.BICUBIC)
    return np.asarray(fg.convert("RGBA"))


def fitted(wh: tuple[int, int], longest: int) -> tuple[int, int]:
    """(w, h) scaled so the longer side is ``longest``."""
    w, h = wh
    f = longest / max(w, h)
    return max(1, round(w * f)), max(1, round(h * f))


def relight(colour: np.ndarray, alpha: np.ndarray, bg_under: np.ndarray, strength: float) -> np.ndarray:
    """float (h, w, 3): each channel scaled by (bg mean / object mean) ** strength, means over the
    object's opaque pixels and over the bg under its box, so the object takes on the scene's cast."""
    solid = alpha >= ALPHA_MASKED
    if not solid.any():
        return colour
    gain = ((bg_under.reshape(-1, 3).mean(axis=0) + 1) / (colour[solid].mean(axis=0) + 1)) ** strength
    return np.clip(colour * gain, 0, 255)


def composite(bg: np.ndarray, sprite: np.ndarray, choice: dict, mode: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(composite uint8 (H, W, 3), mask uint8 (H, W) in {0, 255}, box (x, y, w, h)) of one sample."""
    height, width = bg.shape[:2]
    h, w = sprite.shape[:2]
    x, y = int(choice["u"] * (width - w + 1)), int(choice["v"] * (height - h + 1))
    alpha = np.zeros((height, width))
    alpha[y : y + h, x : x + w] = sprite[..., 3]
    mask = np.where(alpha >= ALPHA_MASKED, 255, 0).astype(np.uint8)
    colour = sprite[..., :3].astype(np.float64)
    if "relit" in mode:
        colour = relight(colour, sprite[..., 3], bg[y : y + h, x : x + w], choice["relight"])
    layer = np.zeros((height, width, 3))
    layer[y : y + h, x : x + w] = colour
    if "feathered" in mode and alpha.any():
        # the blurred alpha reaches beyond the object: there it shows the nearest object pixel's colour
        nearest = ndimage.distance_transform_edt(alpha == 0, return_distances=False, return_indices=True)
        layer = layer[nearest[0], nearest[1]]
        alpha = ndimage.gaussian_filter(alpha, choice["sigma"], mode="constant")
    a = alpha[..., None] / 255
    out = np.rint(a * layer + (1 - a) * bg).clip(0, 255).astype(np.uint8)
    return out, mask, (x, y, w, h)


def make(bg_dir: Path, fg_dir: Path, out: Path, size: tuple[int, int], count: int, seed: int, modes: tuple[str, ...]) -> None:
    """Write ``count`` samples in each mode under ``out/MODE/``."""
    bgs, fgs = list_backgrounds(bg_dir), list_foregrounds(fg_dir)
    if not bgs or not fgs:
        raise UsageError(f"{'--bg ' + str(bg_dir) if not bgs else '--fg ' + str(fg_dir)}: no images there")
    choices = [draw(np.random.default_rng([seed, i]), len(bgs), len(fgs)) for i in range(count)]
    cut_outs = [load_foreground(p) for p in fgs]  # all read before anything is written
    backgrounds = {b: load_background(bgs[b], size) for b in sorted({c["bg"] for c in choices})}
    for mode in modes:
        folder = out / mode
        for kind in ("bg", "composite", "mask"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
        records = []
        for i, choice in enumerate(choices):
            bg = backgrounds[choice["bg"]]
            sprite = shaped_sprite(cut_outs[choice["fg"]], choice, size, rotate="rotated" in mode)
            image, mask, box = composite(bg, sprite, choice, mode)
            name = f"{i:05d}.png"
            Image.fromarray(bg).save(folder / "bg" / name)
            Image.fromarray(image).save(folder / "composite" / name)
            Image.fromarray(mask).save(folder / "mask" / name)
            records.append(record(name, choice, mode, bgs, fgs, fg_dir, box, mask))
        manifest = {"tool": "benchmarks/independent_compositor.py", "mode": mode, "size": list(size), "seed": seed, "count": count,
                    "bg_dir": str(bg_dir), "fg_dir": str(fg_dir), "samples": records}  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def record(name: str, choice: dict, mode: str, bgs: list[Path], fgs: list[Path], fg_dir: Path, box: tuple, mask: np.ndarray) -> dict:
    """One sample's manifest entry: its files, its draws that the mode applied, its box and mask area."""
    entry = {"name": name, "bg": bgs[choice["bg"]].name, "fg": fgs[choice["fg"]].relative_to(fg_dir).as_posix(), "flip": choice["flip"],
             "box": list(box), "mask_area": int(np.count_nonzero(mask))}  # fmt: skip
    applied = {"angle": "rotated", "sigma": "feathered", "relight": "relit"}
    return {**entry, **{k: choice[k] for k, word in applied.items() if word in mode}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])  # fmt: skip
    parser.add_argument("--bg", type=Path, required=True, help="folder of background photos")
    parser.add_argument("--fg", type=Path, required=True, help="folder of RGBA cut-outs (PNG; sub-folders are read too)")
    parser.add_argument("--out", type=Path, required=True, help="where OUT/MODE/ folders are written")
    parser.add_argument("--size", type=parse_size, default=(96, 96), help="frame: S (square) or WxH, e.g. 640x480 (default 96)")
    parser.add_argument("--count", type=int, default=200, help="samples per mode (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="sample i draws from numpy default_rng([seed, i]) (default 0)")
    parser.add_argument("--modes", type=parse_modes, default=MODES, help=f"comma-separated, from {', '.join(MODES)} (default all)")
    args = parser.parse_args(argv)
    for flag, folder in (("--bg", args.bg), ("--fg", args.fg)):
        if not folder.is_dir():
            parser.exit(2, f"{flag} {folder}: not a folder\n")
    if args.count < 1:
        parser.exit(2, f"--count {args.count}: give at least 1\n")
    try:
        make(args.bg, args.fg, args.out, args.size, args.count, args.seed, args.modes)
    except UsageError as e:
        parser.exit(2, f"{e}\n")
    print(f"{args.count} samples x {len(args.modes)} modes written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
