"""Predict masks and depth for (bg, fg_bg) pairs of any size, with torch or with ONNX only.

Each fg_bg (and its bg, resized to the fg_bg's size when they differ) is scaled keeping its aspect:
by default so its longer side is the model's size S, or by ``scale`` (``--scale 0.5``: a 768 x 576
frame is seen at 384 x 288, where a 70-px walker is 35 px, as the objects the model trained on are).
What is smaller than S is padded (the edge replicated, in bg and fg_bg alike: background to the
model), never stretched; what is larger is cut into S x S tiles overlapping by half, whose outputs
are blended (weighted towards each tile's centre). The outputs are scaled back. Written per fg_bg ``NAME``: ``NAME.mask.png``
(0/255), ``NAME.depth.png`` (8-bit, near = bright) and ``NAME.side.png`` (bg | fg_bg | mask |
depth). This module imports neither torch nor onnxruntime at the top: ``--onnx`` needs no torch.

``device`` (``auto|cpu|cuda|cuda:N``, see :mod:`fgbg.engine.devices`): a checkpoint runs there
(channels_last, bf16/fp16 autocast on a GPU, outputs back in fp32); an ONNX file gets the ONNX
Runtime providers of that device (CUDA when onnxruntime-gpu has it, else the CPU, said in one line).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
from PIL import Image

from fgbg.errors import ConfigError, UserError
from fgbg.make.assets import IMAGE_SUFFIXES
from fgbg.progress import progress as progress_reporter

if TYPE_CHECKING:
    from fgbg.engine.devices import Device

SIDE_PAD = 4  # white pixels between the pictures of a side-by-side PNG
PREDICT_BATCH = 16  # images (tiles) per network call (the default of --batch-size)
MAX_SCALE = 8.0  # --scale: more would only upsample


class Predictor(Protocol):
    size: int

    def __call__(self, bg: np.ndarray, fg_bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, 3, S, S) on [0, 1] twice -> (mask probability, depth), float32 (N, S, S) each."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class TorchPredictor:
    """A training checkpoint run with torch on ``device`` (a resolved :class:`~fgbg.engine.devices.Device`; default the CPU)."""

    def __init__(self, checkpoint: Path, device: Device | None = None) -> None:
        from fgbg.engine.devices import cpu_device
        from fgbg.learn.model import inference_net

        self.device = device or cpu_device()
        net, meta = inference_net(checkpoint)
        self.net = self.device.place(net)
        self.size = int(meta["train"]["size"])

    def __call__(self, bg: np.ndarray, fg_bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from fgbg.learn.evaluate import infer

        with torch.inference_mode():
            x_bg, x_fg = (self.device.move(torch.from_numpy(x)) for x in (bg, fg_bg))
            pred = infer(self.net, x_bg, x_fg, self.device)
            return torch.sigmoid(pred.mask_logits)[:, 0].cpu().numpy(), pred.depth[:, 0].cpu().numpy()


class OnnxPredictor:
    """An exported ONNX file run with onnxruntime (no torch), with ``providers`` (default the CPU)."""

    def __init__(self, onnx_path: Path, providers: list | None = None, warn: Callable[[str], None] | None = None) -> None:
        from fgbg.engine.devices import onnx_session

        if not Path(onnx_path).is_file():
            raise UserError(f"{onnx_path}: no such ONNX file; make one with `fgbg export onnx CKPT --out {onnx_path}`")
        self.session = onnx_session(onnx_path, threads=0, providers=providers, warn=warn)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "fgbg.size" not in meta:
            raise UserError(f"{onnx_path}: an ONNX model, but not one `fgbg export` wrote (no fgbg.size metadata)")
        self.size = int(meta["fgbg.size"])

    def __call__(self, bg: np.ndarray, fg_bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, depth = self.session.run(["mask_logits", "depth"], {"bg": bg, "fg_bg": fg_bg})
        return sigmoid(logits[:, 0]), depth[:, 0]


def load_rgb(path: Path) -> np.ndarray:
    """Any image file -> uint8 (H, W, 3) RGB."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def scaled(rgb: np.ndarray, scale: float) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, h, w) on [0, 1] with h, w = round(H * scale), round(W * scale) (at least 1): bilinear, the aspect kept."""
    h, w = (max(1, round(n * scale)) for n in rgb.shape[:2])
    resized = Image.fromarray(rgb).resize((w, h), Image.BILINEAR) if (h, w) != rgb.shape[:2] else Image.fromarray(rgb)
    return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0


def tile_starts(length: int, size: int) -> list[int]:
    """Where S x S tiles start along a side of ``length`` >= ``size`` px: every size // 2, the last flush with the end.

    >>> tile_starts(96, 96), tile_starts(200, 96)
    ([0], [0, 48, 104])
    """
    step = max(1, size // 2)
    starts = list(range(0, length - size + 1, step))
    return starts if starts[-1] == length - size else [*starts, length - size]


def tile_weight(size: int) -> np.ndarray:
    """float32 (S, S): a pyramid, 1 at the edge to S / 2 at the centre, so blended tiles meet without seams."""
    ramp = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32) + 1
    return np.minimum(ramp[:, None], ramp[None, :])


def padded_to(x: np.ndarray, size: int) -> np.ndarray:
    """float32 (3, h, w) -> (3, max(h, S), max(w, S)), the edge replicated below and to the right."""
    h, w = x.shape[1:]
    return np.pad(x, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w))), mode="edge")


def predict_tiled(predictor: Predictor, bg: np.ndarray, fg_bg: np.ndarray, batch_size: int = PREDICT_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """float32 (3, h, w) bg and fg_bg on [0, 1], aligned, any h and w -> (mask probability, depth), float32 (h, w) each.

    Padded to S at least (:func:`padded_to`), run in S x S tiles (:func:`tile_starts`), blended by :func:`tile_weight`.
    """
    size, (h, w) = predictor.size, fg_bg.shape[1:]
    bg, fg_bg = padded_to(bg, size), padded_to(fg_bg, size)
    tiles = [(y, x) for y in tile_starts(bg.shape[1], size) for x in tile_starts(bg.shape[2], size)]
    weight = tile_weight(size)
    total, mask, depth = (np.zeros(bg.shape[1:], np.float32) for _ in range(3))
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start : start + batch_size]
        crops = [(slice(y, y + size), slice(x, x + size)) for y, x in chunk]
        m, d = predictor(np.stack([bg[:, ys, xs] for ys, xs in crops]), np.stack([fg_bg[:, ys, xs] for ys, xs in crops]))
        for (ys, xs), mi, di in zip(crops, m, d):
            total[ys, xs] += weight
            mask[ys, xs] += weight * mi
            depth[ys, xs] += weight * di
    return (mask / total)[:h, :w], (depth / total)[:h, :w]


def resize_map(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 (h, w) -> float32 (height, width), bilinear."""
    return np.asarray(Image.fromarray(x.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def to_pngs(mask_prob: np.ndarray, depth: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs (h, w) -> (mask uint8 {0, 255}, depth uint8, near = bright), both (height, width)."""
    mask = np.where(resize_map(mask_prob, height, width) > 0.5, 255, 0).astype(np.uint8)
    depth8 = np.rint(np.clip(resize_map(depth, height, width), 0, 1) * 255).astype(np.uint8)
    return mask, depth8


def side_by_side(images: list[np.ndarray], pad: int = SIDE_PAD) -> np.ndarray:
    """uint8 (H, W[, 3]) images of one height -> one (H, sum W + pads, 3) picture."""
    h = images[0].shape[0]
    parts = []
    for img in images:
        rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        parts += [rgb, np.full((h, pad, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def pair_by_name(bgs: list[Path], composites: list[Path]) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Match backgrounds and composites by file name stem (room1.jpg + room1.png).

    Returns (pairs in composite order, composites with no background, backgrounds with no composite).
    """
    by_stem = {p.stem: p for p in bgs}
    pairs = [(by_stem[f.stem], f) for f in composites if f.stem in by_stem]
    paired = {f.stem for f in composites}
    return pairs, [f for f in composites if f.stem not in by_stem], [b for b in bgs if b.stem not in paired]


def unpaired_line(files: list[Path], what: str, missing: str, shown: int = 10) -> str:
    """``3 composites have no background of the same name: a.jpg, b.jpg, c.jpg`` (the first ``shown``)."""
    names = ", ".join(f.name for f in files[:shown]) + (f" and {len(files) - shown} more" if len(files) > shown else "")
    has = "has" if len(files) == 1 else "have"
    return f"{len(files)} {what}{'' if len(files) == 1 else 's'} {has} no {missing} of the same name, skipped: {names}"


def find_pairs(bg: Path, fg_bg: Path, warn: Callable[[str], None] | None = None) -> list[tuple[Path, Path]]:
    """(bg, fg_bg) file pairs: file + file; one bg file + a folder of fg_bg; or two folders matched by file name stem.

    Two folders: composites without a background of their name, and backgrounds without a
    composite, are skipped, and said so through ``warn`` (one line each kind; default stderr).

    Raises:
        UserError: a path does not exist, a bg folder is given with one fg_bg file, or no pairs.
    """
    warn = warn or _to_stderr
    for p in (bg, fg_bg):
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")

    def images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    if fg_bg.is_file():
        if bg.is_dir():
            raise UserError(f"--bg {bg} is a folder but --fg-bg {fg_bg} is a file; give one bg file")
        return [(bg, fg_bg)]
    if bg.is_file():
        pairs = [(bg, f) for f in images(fg_bg)]
    else:
        pairs, lone_composites, lone_bgs = pair_by_name(images(bg), images(fg_bg))
        if pairs and lone_composites:
            warn(unpaired_line(lone_composites, "composite", "background"))
        if pairs and lone_bgs:
            warn(unpaired_line(lone_bgs, "background", "composite"))
    if not pairs:
        raise UserError(f"no (bg, fg_bg) pairs in {bg} and {fg_bg}; two folders are paired by file name (room1.jpg + room1.png)")
    return pairs


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def predict(
    model: Path,
    bg: Path,
    fg_bg: Path,
    out: Path,
    onnx: bool = False,
    batch_size: int = PREDICT_BATCH,
    log: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    progress: bool | None = None,
    device: str | Device = "auto",
    scale: float | None = None,
) -> list[Path]:
    """Predict every pair, writing NAME.mask.png, NAME.depth.png and NAME.side.png into ``out``; returns the mask paths.

    ``device``: ``auto|cpu|cuda|cuda:N`` (or a resolved Device for a checkpoint); ``batch_size``:
    images (or tiles) per network call; ``scale``: the factor the images are seen at (None: the longer
    side becomes the model's size; see the module's docstring). ``warn`` (default: stderr) hears of files left unpaired and the
    device's note (``auto`` fell back to the CPU, no CUDA provider for ONNX Runtime);
    ``progress`` as in :func:`fgbg.progress.progress`.

    Raises:
        UserError: no pairs, a model that is not ours, ``batch_size`` < 1, ``scale`` not positive, ``device`` not here (DeviceError).
    """
    warn = warn or _to_stderr
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if scale is not None and not 0 < scale <= MAX_SCALE:
        raise ConfigError(f"--scale must be above 0 and at most {MAX_SCALE}, got {scale}")
    predictor, where = make_predictor(Path(model), onnx, device, warn)
    pairs = find_pairs(Path(bg), Path(fg_bg), warn)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with progress_reporter(len(pairs), "predict", "image", enabled=progress) as bar:
        for start in range(0, len(pairs), batch_size):
            written += predict_batch(predictor, pairs[start : start + batch_size], out, scale, batch_size)
            bar.update(len(pairs[start : start + batch_size]))
    log(f"wrote masks, depth maps and side-by-side PNGs of {len(written)} images to {out} ({where})")
    return written


def make_predictor(model: Path, onnx: bool, device: str | Device, warn: Callable[[str], None]) -> tuple[Predictor, str]:
    """The predictor of ``model`` on ``device`` (resolved once, here), and where it runs, in words.

    A checkpoint: the device is resolved before the checkpoint is read (``--device cuda`` without a
    GPU stops first) and its note said after (so a damaged checkpoint is the only line). An ONNX
    file: the device's ONNX Runtime providers, with the one-line fallback note when CUDA was asked
    for and ONNX Runtime has no CUDA provider.
    """
    from fgbg.engine import devices

    if onnx:
        predictor = OnnxPredictor(model, devices.onnx_providers(device, warn), warn)
        return predictor, "ONNX Runtime " + ", ".join(predictor.session.get_providers())
    resolved = devices.as_device(device)
    predictor = TorchPredictor(model, resolved)
    if resolved.note:
        warn(f"note: {resolved.note}")
    return predictor, f"{resolved.name}, {resolved.autocast or 'fp32'}"


def predict_batch(predictor: Predictor, chunk: list[tuple[Path, Path]], out: Path, scale: float | None = None,
                  batch_size: int = PREDICT_BATCH) -> list[Path]:  # fmt: skip
    """Run a few (bg, fg_bg) files and write the three PNGs of each composite; returns the mask paths.

    ``scale``: the factor each image is seen at (None: its longer side becomes the model's size);
    ``batch_size``: tiles per network call.
    """
    written = []
    for b, f in chunk:
        c = load_rgb(f)
        rgb = load_rgb(b)
        if rgb.shape != c.shape:  # the bg must line up with the composite
            rgb = np.asarray(Image.fromarray(rgb).resize((c.shape[1], c.shape[0]), Image.BILINEAR))
        factor = predictor.size / max(c.shape[:2]) if scale is None else scale
        m, d = predict_tiled(predictor, scaled(rgb, factor), scaled(c, factor), batch_size)
        mask, depth = to_pngs(m, d, c.shape[0], c.shape[1])
        Image.fromarray(mask).save(out / f"{f.stem}.mask.png")
        Image.fromarray(depth).save(out / f"{f.stem}.depth.png")
        Image.fromarray(side_by_side([rgb, c, mask, depth])).save(out / f"{f.stem}.side.png")
        written.append(out / f"{f.stem}.mask.png")
    return written
