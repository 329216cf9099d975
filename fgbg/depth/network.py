"""Network depth, the parent's part: load the network once and run it on every bg, before any write.

``estimator-per-bg`` replaces each bg's depth map by the network's, scaled to [0, 1];
``estimator`` only records the per-bg scales that the renderers (each with its network,
see ``Renderer.from_store``) apply to every composite. The network runs on
``config.depth_device``; where it ran (``compute``) is part of the recorded identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from fgbg.config import GenerateConfig
from fgbg.depth.estimator import (
    Estimator,
    apply_scale,
    bg_scales,
    image_range,
    infer_batch,
    load_estimator,
    worker_threads,
)
from fgbg.depth.pipeline import pipeline, pipeline_threads

if TYPE_CHECKING:
    from fgbg.make.assets import Assets


def prepare_network_depth(
    config: GenerateConfig, assets: "Assets", warn: Callable[[str], None] | None = None, estimator: Estimator | None = None
) -> dict | None:  # fmt: skip
    """The state entries that identify the network, where it ran, and its scales (None for ``layered``).

    Sets ``assets.bg_depth`` for ``estimator-per-bg``. ``warn`` gets the one-line device notes.
    ``estimator``: the network that labels the composites too (Ray's depth actors, or the one
    ``generate`` loaded to render here with): the bgs' scales and the recorded ``compute`` are
    then its own, so they come from the device the composites' maps come from. None:
    ``config.depth_model`` is loaded here, on ``config.depth_device``.

    Raises:
        EstimatorError: the model cannot be loaded or gives no depth map.
        DeviceError: ``--device cuda`` without a GPU.
    """
    if config.depth == "layered":
        return None
    if estimator is None:
        estimator = load_estimator(config.depth_model, config.depth_preset or None, worker_threads(1), config.depth_device, warn)
    raw_maps = label_images(estimator, assets.bg, config.depth_batch)
    scales = bg_scales(raw_maps, config.depth_norm)
    if config.depth_norm == "image":
        scales = [image_range(m) for m in raw_maps]
    if config.depth == "estimator-per-bg":
        assets.bg_depth = [apply_scale(m, lo, hi)[0] for m, (lo, hi) in zip(raw_maps, scales)]
    return {"depth_model": estimator.description, "depth_scales": [[round(lo, 7), round(hi, 7)] for lo, hi in scales]}


def label_images(estimator: Estimator, images: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """The network's raw inverse depth of every uint8 (H, W, 3) image, float32 (H, W) each, in order."""
    infer = lambda inputs: infer_batch(estimator, inputs)
    to_map = lambda image, _, raw: estimator.to_map(raw, image.shape[:2])
    threads = pipeline_threads(estimator.device.is_cuda, estimator.threads)
    return list(pipeline(images, estimator.to_input, infer, to_map, batch, **threads))


def network_on_gpu(state: dict) -> bool:
    """Whether the renderers of this run (``--depth estimator``) run their network on a GPU.

    Then one process renders, its CPU threads feeding the one network (per GPU), rather
    than one process (and one copy of the network) per core.
    """
    compute = (state.get("depth_model") or {}).get("compute") or {}
    return state["config"]["depth"] == "estimator" and compute.get("device") == "cuda"
