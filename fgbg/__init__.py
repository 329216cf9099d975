"""fgbg: synthetic foreground/background datasets with exact masks and depth, and a model trained on them.

The package reads like the data flows:

- ``make/``     assets (read and prepare bg/fg folders; categories from sub-folders) -> split (of
                the store's plan) -> compose (placement and blending, pure numpy) and objects (several
                objects ordered by depth, pure numpy) -> render (one sample) -> generate (the job);
                prepared (the store's assets/), cutout (foregrounds from photos)
- ``depth/``    depth sources: layered (bg map + fg layer at its foot), sidecars, estimator
                networks (ONNX, transformers), network (their once-per-run preparation)
- ``store/``    the plan (keys and shards: the store's key space), layout and durable writes,
                writers and the one reader (``StoreReader``) per format, identity of a run,
                dataset.json and manifest, the write lock, what fgbg may replace (``owned``)
- ``inspect/``  stats (exact histograms), verify, preview, card
- ``exports/``  a store as COCO or YOLO files (streamed over its shards; the job in ``run``)
- ``learn/``    data, model, losses, metrics, train (with its schedule, callbacks and resume),
                evaluate, predict, export
- ``engine/``   where work fans out (``local``: spawned worker processes) and devices (the one
                ONNX Runtime session builder)
- ``config``, ``errors`` (the one-line ``UserError``), ``progress``, ``codecs``, ``cli`` (thin), ``demo``

The names below import lazily, so ``import fgbg`` costs nothing until one is used
(training pulls in torch and Lightning; generation does not).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "GenerateConfig": "fgbg.config",
    "UserError": "fgbg.errors",
    "generate": "fgbg.make.generate",
    "StoreReader": "fgbg.store.read",
    "iter_samples": "fgbg.store.read",
    "write_stats": "fgbg.inspect.stats",
    "read_stats": "fgbg.inspect.stats",
    "verify": "fgbg.inspect.verify",
    "show": "fgbg.inspect.preview",
    "write_card": "fgbg.inspect.card",
    "export_store": "fgbg.exports",
    "TrainConfig": "fgbg.learn.train",
    "train": "fgbg.learn.train",
    "ModelConfig": "fgbg.learn.model",
    "evaluate": "fgbg.learn.evaluate",
    "predict": "fgbg.learn.predict",
    "export_onnx": "fgbg.learn.export",
    "run_demo": "fgbg.demo",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fgbg' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
