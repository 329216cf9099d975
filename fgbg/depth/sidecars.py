"""``fgbg depth-maps``: run a depth network once per background, write NAME.depth.png sidecars.

The sidecars are then used by ``--depth layered`` (no network at generation time), and
can be reused for any number of stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from fgbg import codecs
from fgbg.make.assets import DEPTH_SIDECAR, BadInput, list_images, read_image
from fgbg.depth.estimator import apply_scale, load_estimator, robust_range, worker_threads
from fgbg.depth.layered import quantize_depth
from fgbg.store.layout import atomic_write_bytes


def write_depth_sidecars(
    folder: Path, model: str, preset: str | None = None, overwrite: bool = False, progress: bool = True
) -> list[Path]:
    """For every image NAME.ext in ``folder``, write NAME.depth.png (16-bit, near = bright).

    Each map is scaled by its own 1st/99th percentiles. Existing sidecars are kept unless
    ``overwrite``. Returns the paths written.

    Raises:
        BadInput: the folder has no images, or one cannot be read.
        EstimatorError: the model cannot be loaded or gives no depth map.
    """
    images = list_images(Path(folder))
    if not images:
        raise BadInput(f"{folder}: no images found")
    estimator = load_estimator(model, preset, worker_threads(1))
    written = []
    for path in tqdm(images, unit="image", disable=not progress):
        sidecar = path.with_name(path.stem + DEPTH_SIDECAR)
        if sidecar.exists() and not overwrite:
            continue
        try:
            img, _ = read_image(path)
        except BadInput as e:
            raise BadInput(f"{path}: {e}") from None
        rgb = np.asarray(img.convert("RGB"))
        raw = estimator(rgb[None])[0]
        scaled, _ = apply_scale(raw, *robust_range(raw))
        atomic_write_bytes(sidecar, codecs.encode_png_gray(quantize_depth(scaled, 16)))
        written.append(sidecar)
    return written
