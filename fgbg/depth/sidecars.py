"""``fgbg depth-maps``: run a depth network once per background, write NAME.depth.png sidecars.

The sidecars are then used by ``--depth layered`` (no network at generation time), and
can be reused for any number of stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgbg import codecs
from fgbg.depth.estimator import apply_scale, load_estimator, robust_range, worker_threads
from fgbg.depth.layered import quantize_depth
from fgbg.make.assets import DEPTH_SIDECAR, BadInput, list_images, read_image
from fgbg.progress import progress as progress_bar
from fgbg.store.layout import atomic_write_bytes
from fgbg.store.lock import check_free, store_lock


def write_depth_sidecars(
    folder: Path, model: str, preset: str | None = None, overwrite: bool = False, progress: bool | None = None
) -> list[Path]:
    """For every image NAME.ext in ``folder``, write NAME.depth.png (16-bit, near = bright).

    Each map is scaled by its own 1st/99th percentiles. Existing sidecars are kept unless
    ``overwrite``. The folder's write lock is held while writing. Returns the paths written.

    Raises:
        BadInput: the folder has no images, or one cannot be read.
        EstimatorError: the model cannot be loaded or gives no depth map.
        StoreBusy: another fgbg process is writing into ``folder``.
    """
    images = list_images(Path(folder))
    if not images:
        raise BadInput(f"{folder}: no images found")
    check_free(folder)
    estimator = load_estimator(model, preset, worker_threads(1))
    written = []
    with store_lock(folder, "depth-maps"), progress_bar(len(images), "depth-maps", "image", enabled=progress) as bar:
        for path in images:
            sidecar = path.with_name(path.stem + DEPTH_SIDECAR)
            if overwrite or not sidecar.exists():
                atomic_write_bytes(sidecar, codecs.encode_png_gray(quantize_depth(sidecar_map(estimator, path), 16)))
                written.append(sidecar)
            bar.update(1)
    return written


def sidecar_map(estimator, path: Path) -> np.ndarray:
    """The network's inverse depth of one image, float32 (H, W) in [0, 1], scaled by its own percentiles."""
    try:
        img, _ = read_image(path)
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    raw = estimator(np.asarray(img.convert("RGB"))[None])[0]
    return apply_scale(raw, *robust_range(raw))[0]
