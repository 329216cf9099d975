"""``fgbg depth-maps``: run a depth network once per background, write NAME.depth.png sidecars.

The sidecars are then used by ``--depth layered`` (no network at generation time), and
can be reused for any number of stores. Images are read and sidecars encoded on CPU
threads while the network runs batched on the device (:mod:`fgbg.depth.pipeline`); they
are written in the folder's order, and their bytes do not depend on the batch size.

With ``engine="ray"`` only the network moves: it runs in Ray depth actors (on the cluster's
GPUs, else its CPUs), while this process still reads the images and writes the sidecars.
The folder (the user's backgrounds, on this machine) need not be on a shared file system,
and the sidecars are the local engine's bytes on the same kind of device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from fgbg import __version__, codecs
from fgbg.depth.estimator import (
    Estimator,
    apply_scale,
    infer_batch,
    load_estimator,
    robust_range,
    worker_threads,
)
from fgbg.depth.layered import quantize_depth
from fgbg.depth.pipeline import pipeline, pipeline_threads
from fgbg.engine import check_engine
from fgbg.errors import ConfigError
from fgbg.make.assets import DEPTH_SIDECAR, BadInput, list_images, read_image
from fgbg.progress import progress as progress_bar
from fgbg.store.layout import atomic_write_bytes, atomic_write_json
from fgbg.store.lock import check_free, store_lock
from fgbg.store.owned import FGBG_VERSION, check_files_ours, is_fgbg_json

SIDECAR_BITS = 16
SIDECAR_RECORD = ".fgbg-depth-maps.json"  # beside the images: the sidecars depth-maps wrote, the only ones --overwrite replaces


def write_depth_sidecars(
    folder: Path, model: str, preset: str | None = None, overwrite: bool = False, progress: bool | None = None,
    device: str = "auto", batch_size: int = 1, warn: Callable[[str], None] | None = None,
    engine: str = "local", ray_address: str = "auto", depth_workers: int | None = None,
    gpus_per_worker: float | None = None,
) -> list[Path]:  # fmt: skip
    """For every image NAME.ext in ``folder``, write NAME.depth.png (16-bit, near = bright).

    Each map is scaled by its own 1st/99th percentiles. Existing sidecars are kept unless
    ``overwrite``, which replaces only those this function wrote (named in the folder's
    :data:`SIDECAR_RECORD`): a sidecar from elsewhere (a depth camera, ``fgbg rooms``) is never
    replaced. The folder's write lock is held while writing. Returns the paths written (none,
    and the network is not loaded, when every image has its sidecar already).

    Args:
        device: where the network runs (auto, cpu, cuda, cuda:N); on Ray, in each actor
            (any cuda spec: the actor's own GPU).
        batch_size: images per network call (a run of images whose network inputs differ in
            size, with a network without a fixed side, is split into calls of one size).
        warn: where the one-line device notes go.
        engine: "local" (the network in this process) or "ray" (in Ray depth actors; ``model``
            must then be readable on the actors' nodes; ``folder`` need not).
        ray_address, depth_workers, gpus_per_worker: with Ray, as for ``generate``: the
            cluster, the actors (default one per GPU, else a quarter of the CPUs) and GPUs apiece.

    Raises:
        BadInput: the folder has no images, or one cannot be read.
        ConfigError: a batch size below 1; DeviceError: ``cuda`` and no GPU.
        EstimatorError: the model cannot be loaded or gives no depth map.
        StoreBusy: another fgbg process is writing into ``folder``.
        NotOurs: ``overwrite`` and sidecars that fgbg depth-maps did not write, named.
        UserError: an unknown engine; with Ray, no cluster at ``ray_address`` or a GPU asked
            for where there is none.
    """
    images = list_images(Path(folder))
    if not images:
        raise BadInput(f"{folder}: no images found")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    check_engine(engine)
    check_free(folder)
    written_before = read_record(Path(folder))
    if overwrite:
        theirs = [s for p in images if (s := sidecar_path(p)).exists() and s.name not in written_before]
        check_files_ours(theirs, "fgbg depth-maps", "--overwrite")
    todo = [p for p in images if overwrite or not sidecar_path(p).exists()]
    if not todo:  # a rerun: nothing to load the network for
        return []
    estimator = sidecar_estimator(model, preset, device, warn, engine, ray_address, depth_workers, gpus_per_worker)
    with store_lock(folder, "depth-maps"), progress_bar(len(images), "depth-maps", "image", enabled=progress) as bar:
        names = written_before | {sidecar_path(p).name for p in todo}
        atomic_write_json(Path(folder) / SIDECAR_RECORD, {FGBG_VERSION: __version__, "sidecars": sorted(names)})
        bar.update(len(images) - len(todo))
        for path, png in sidecar_pngs(estimator, todo, batch_size):
            atomic_write_bytes(sidecar_path(path), png)
            bar.update(1)
    return [sidecar_path(p) for p in todo]


def sidecar_estimator(
    model: str, preset: str | None, device: str, warn: Callable[[str], None] | None,
    engine: str, ray_address: str, depth_workers: int | None, gpus_per_worker: float | None,
) -> Estimator:  # fmt: skip
    """The network here (local), or Ray depth actors behind one estimator, 2 batches in flight per actor."""
    if engine == "local":
        return load_estimator(model, preset, worker_threads(1), device, warn)
    from fgbg.engine import ray_engine

    ray_engine.connect(ray_address)
    return ray_engine.actor_labeller(model, preset, device, depth_workers, gpus_per_worker, warn=warn)


def read_record(folder: Path) -> set[str]:
    """The names of the sidecars fgbg depth-maps wrote in ``folder`` (its :data:`SIDECAR_RECORD`)."""
    path = folder / SIDECAR_RECORD
    return set(json.loads(path.read_text()).get("sidecars", [])) if is_fgbg_json(path) else set()


def sidecar_path(image: Path) -> Path:
    return image.with_name(image.stem + DEPTH_SIDECAR)


def sidecar_pngs(estimator: Estimator, paths: list[Path], batch: int):
    """(path, 16-bit PNG bytes of its sidecar) for every image, in order: read, network, encode."""

    def prepare(path: Path) -> tuple[tuple[int, int], np.ndarray]:
        rgb = read_rgb(path)
        return rgb.shape[:2], estimator.to_input(rgb)

    def infer(prepared: list) -> np.ndarray:
        return infer_batch(estimator, [x for _, x in prepared])

    def finish(path: Path, prepared, raw: np.ndarray) -> tuple[Path, bytes]:
        return path, encode_sidecar(estimator.to_map(raw, prepared[0]))

    return pipeline(paths, prepare, infer, finish, batch, **pipeline_threads(estimator.device.is_cuda, estimator.threads))  # fmt: skip


def read_rgb(path: Path) -> np.ndarray:
    try:
        img, _ = read_image(path)
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    return np.asarray(img.convert("RGB"))


def encode_sidecar(raw: np.ndarray) -> bytes:
    """Raw inverse depth (H, W) -> 16-bit PNG, scaled by its own 1st/99th percentiles."""
    return codecs.encode_png_gray(quantize_depth(apply_scale(raw, *robust_range(raw))[0], SIDECAR_BITS))

