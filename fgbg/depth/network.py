"""Network depth, the parent's part: load the network once and run it on every bg, before any write.

``estimator-per-bg`` replaces each bg's depth map by the network's, scaled to [0, 1];
``estimator`` only records the per-bg scales that the workers (each with its own copy of
the network, see ``Renderer.from_store``) apply to every composite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fgbg.config import GenerateConfig
from fgbg.depth.estimator import apply_scale, bg_scales, image_range, load_estimator, worker_threads

if TYPE_CHECKING:
    from fgbg.make.assets import Assets


def prepare_network_depth(config: GenerateConfig, assets: "Assets") -> dict | None:
    """The state entries that identify the network and its scales (None for ``layered``).

    Sets ``assets.bg_depth`` for ``estimator-per-bg``.

    Raises:
        EstimatorError: the model cannot be loaded or gives no depth map.
    """
    if config.depth == "layered":
        return None
    estimator = load_estimator(config.depth_model, config.depth_preset or None, worker_threads(1))
    raw = [estimator(np.stack(assets.bg[i : i + config.depth_batch]))
           for i in range(0, len(assets.bg), config.depth_batch)]  # fmt: skip
    raw_maps = [m for chunk in raw for m in chunk]
    scales = bg_scales(raw_maps, config.depth_norm)
    if config.depth_norm == "image":
        scales = [image_range(m) for m in raw_maps]
    if config.depth == "estimator-per-bg":
        assets.bg_depth = [apply_scale(m, lo, hi)[0] for m, (lo, hi) in zip(raw_maps, scales)]
    return {"depth_model": estimator.description, "depth_scales": [[round(lo, 7), round(hi, 7)] for lo, hi in scales]}
