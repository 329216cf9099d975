"""``fgbg rooms``: render N rooms into a folder that ``fgbg generate --bg`` reads as backgrounds.

    OUT/room_000000.jpg          the RGB render
    OUT/room_000000.depth.png    16-bit inverse depth, near = bright (the sidecar generate reads)
    OUT/rooms.json               the set: renderer, seed, size (width; and height when not square), textures, and the depth scale
    OUT/retake/room_000000.jpg   with ``--retake``: the room from a second camera pose a few cm and under a
                                 degree away (a handheld retake); a sub-folder, so generate --bg OUT skips it

Inverse depth has one scale for the whole set: ``value = clip(DEPTH_SCALE_M / depth_m, 0, 1)``,
so metric planar depth is ``DEPTH_SCALE_M / value`` (value = PNG / 65535); anything nearer than
DEPTH_SCALE_M is 1. Room ``i`` depends only on (seed, i) and the texture bank (seed, photos), so
a rerun skips the rooms already there and the folder ends byte-identical to one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgbg import __version__, codecs
from fgbg.depth.layered import quantize_depth
from fgbg.engine.local import map_shards, worker_count
from fgbg.errors import ConfigError, UserError
from fgbg.make.assets import DEPTH_SIDECAR
from fgbg.rooms import raster_gl, raycast
from fgbg.rooms.scene import RETAKE_SHIFT_M, RETAKE_TURN_DEG, retake_scene, sample_scene
from fgbg.rooms.settings import DEPTH_SCALE_M, RENDERERS, ROOMS_JSON, read_set
from fgbg.rooms.textures import TextureBank, load_photos, texture_bank
from fgbg.store.layout import atomic_write_bytes, atomic_write_json
from fgbg.store.lock import check_free, store_lock
from fgbg.store.owned import FGBG_VERSION, check_files_ours

DEPTH_BITS = 16
JPEG_QUALITY = 95
SIZE_RANGE = (16, 4096)
ROOMS_PER_TASK = 16  # rooms a worker renders and writes per task
RETAKE = "retake"  # the sub-folder of the retakes
IDENTITY = ("seed", "size", "height", "textures", "depth", "jpeg_quality", "renderer")  # what a rerun must share


@dataclass(frozen=True)
class RoomsReport:
    folder: Path
    written: int
    kept: int  # already there from an earlier run
    renderer: str
    detail: str  # the OpenGL renderer string, or numpy's version


def room_name(index: int) -> str:
    return f"room_{index:06d}"


def inverse_depth(depth_m: np.ndarray, scale_m: float = DEPTH_SCALE_M) -> np.ndarray:
    """Planar depth in metres (S, S) -> float32 inverse depth on [0, 1]: scale_m / depth, 1 when nearer
    than scale_m, 0 where the depth is unknown (not finite or not positive)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = scale_m / depth_m.astype(np.float64)
    return np.where(np.isfinite(v) & (v > 0), np.clip(v, 0.0, 1.0), 0.0).astype(np.float32)


def encode_room(rgb: np.ndarray, depth_m: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[bytes, bytes]:
    """(JPEG of ``rgb``, 16-bit PNG of its inverse depth): the two files of one room."""
    return codecs.encode_jpeg(rgb, quality), codecs.encode_png_gray(quantize_depth(inverse_depth(depth_m), DEPTH_BITS))


def make_renderer(kind: str, frame: int | tuple[int, int], bank: np.ndarray, warn: Callable[[str], None] | None = None):
    """The renderer ``kind`` (auto: EGL when a context can be made, else numpy, with a one-line note) of
    images of ``frame`` (H, W), or S for S x S.

    Raises:
        RendererUnavailable: ``egl`` and no EGL context can be made (the reason and how to install).
    """
    if kind == "numpy":
        return raycast.RaycastRenderer(frame, bank)
    try:
        return raster_gl.EGLRenderer(frame, bank)
    except raster_gl.RendererUnavailable as e:
        if kind == "egl":
            raise
        (warn or (lambda m: None))(f"{e}; rendering with numpy instead (several times slower)")
        return raycast.RaycastRenderer(frame, bank)


def set_description(seed: int, size: int, bank: TextureBank, textures: Path | None, renderer, count: int, retake: bool = False, height: int = 0) -> dict:
    """What rooms.json records: enough to read the depth back in metres and to refuse a mixed rerun.
    ``size`` is the width; ``height`` (recorded when not 0: a set of W x H rooms) the height, 0 for square."""
    return {
        "generator": "fgbg rooms",
        "fgbg_version": __version__,
        "renderer": renderer.name,
        "renderer_detail": renderer.detail,
        "seed": seed,
        "size": size,
        **({"height": height} if height else {}),
        "count": count,
        "textures": {"kind": "photos" if bank.sources else "procedural", "folder": str(textures) if textures else None, "files": bank.sources},
        "depth": {
            "kind": "inverse planar depth, near = bright",
            "scale_m": DEPTH_SCALE_M,
            "bits": DEPTH_BITS,
            "to_metres": f"depth_m = {DEPTH_SCALE_M} / (png / {(1 << DEPTH_BITS) - 1}); png 0 = unknown",
            "files": f"NAME{DEPTH_SIDECAR}",
        },
        "jpeg_quality": JPEG_QUALITY,
        "retake": {"folder": RETAKE, "shift_m": list(RETAKE_SHIFT_M), "turn_deg": RETAKE_TURN_DEG} if retake else None,
    }


def check_same_set(out: Path, recorded: dict | None, wanted: dict) -> None:
    """Refuse to add rooms to a folder made with other settings: the set would mix two scenes' rules."""
    if recorded is None:
        return
    differ = [k for k in IDENTITY if _identity_value(recorded, k) != _identity_value(wanted, k)]
    if differ:
        what = ", ".join(f"{k} {json.dumps(recorded.get(k))[:60]} (now {json.dumps(wanted.get(k))[:60]})" for k in differ)
        raise UserError(f"--out {out} holds rooms made with other settings: {what}; rerun with the same settings, or give another --out")


def _identity_value(description: dict, key: str):
    value = description.get(key)
    if key == "textures" and isinstance(value, dict):
        return value.get("files")  # the photos by name and sha256, wherever the folder is given from
    return value


def files_not_ours(out: Path, recorded: dict | None, count: int) -> list[Path]:
    """The files a run would write that are there already and are not fgbg's rooms: all of them
    when ``out``'s rooms.json (``recorded``) is missing or is not fgbg's."""
    if recorded is not None and FGBG_VERSION in recorded:
        return []
    names = [ROOMS_JSON] + [f"{room_name(i)}{ext}" for i in range(count) for ext in (".jpg", DEPTH_SIDECAR)]
    return [out / n for n in names if (out / n).exists()]


def check_arguments(count: int, size: int, renderer: str, height: int = 0) -> None:
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    if not (SIZE_RANGE[0] <= size <= SIZE_RANGE[1] and SIZE_RANGE[0] <= (height or size) <= SIZE_RANGE[1]):
        got = f"{size}x{height}" if height else str(size)
        raise ConfigError(f"--size must be S or WxH with each side in {SIZE_RANGE[0]}..{SIZE_RANGE[1]} pixels, got {got}")
    if renderer not in RENDERERS:
        raise ConfigError(f"--renderer must be one of {', '.join(RENDERERS)}, got {renderer!r}")


def render_rooms(
    out: Path, count: int, size: int = 224, textures: Path | None = None, seed: int = 0, renderer: str = "auto",
    progress: bool | None = None, warn: Callable[[str], None] | None = None, workers: int | None = None, retake: bool = False,
    height: int = 0,
) -> RoomsReport:  # fmt: skip
    """Render rooms 0 .. count-1 of the set ``seed`` into ``out``; rooms already there are kept.

    Args:
        size: width of the images, pixels (and their height unless ``height``).
        textures: a folder of photos to cut textures from (floors, walls, furniture), or None
            for procedural ones.
        renderer: egl, numpy, or auto (egl when an EGL context can be made). A rerun into the
            same folder must render with the renderer the folder was made with.
        workers: processes, each with its own renderer, ROOMS_PER_TASK rooms at a time
            (:func:`fgbg.engine.local.map_shards`); None = one per core, 0 = in this process.
            The files do not depend on it.
        height: height of the images, pixels; 0: ``size`` (square). The camera's field of view
            spans the shorter side, so a wider frame sees more of the room, not a stretched one.
        retake: also render each room from a second camera pose (:func:`~fgbg.rooms.scene.retake_scene`)
            into OUT/retake/NAME.jpg: a bg input photographed apart from the composite's
            (``fgbg evaluate --bg-from OUT/retake``). A rerun with it adds the retakes a set lacks.

    Raises:
        ConfigError: a bad count, size or renderer name.
        BadInput: ``textures`` is not a folder of readable images.
        RendererUnavailable: ``egl`` and no EGL context here.
        UserError: ``out`` holds rooms made with other settings; StoreBusy: another writer;
            NotOurs: ``out`` holds a rooms.json or room files that fgbg rooms did not write.
    """
    out = Path(out)
    check_arguments(count, size, renderer, height)
    frame = (height or size, size)
    photos, sources = load_photos(textures) if textures is not None else (None, None)
    bank = texture_bank(seed, photos, sources)
    check_free(out)
    recorded = read_set(out)
    check_files_ours(files_not_ours(out, recorded, count), "fgbg rooms", "--out")
    if recorded is not None and renderer == "auto" and recorded.get("renderer") in RENDERERS:
        renderer = recorded["renderer"]  # resume with the renderer the set was started with
        try:
            engine = make_renderer(renderer, frame, bank.layers, warn)
        except raster_gl.RendererUnavailable as e:
            raise raster_gl.RendererUnavailable(
                f"the rooms in --out {out} were rendered with egl, the rest must be too, and no EGL context can be made here"
                f" ({e.reason}); install {raster_gl.INSTALL}, or give another --out", e.reason) from None  # fmt: skip
    else:
        engine = make_renderer(renderer, frame, bank.layers, warn)
    engine.close()  # it said which renderer runs here, and what it is; the workers make their own
    description = set_description(seed, size, bank, textures, engine, max(count, (recorded or {}).get("count") or 0), retake, height)
    check_same_set(out, recorded, description)
    with store_lock(out, "rooms"):
        atomic_write_json(out / ROOMS_JSON, description)
        todo = [i for i in range(count) if not _finished(out, i, retake)]
        if retake:
            (out / RETAKE).mkdir(exist_ok=True)
        tasks = [(out, seed, todo[i : i + ROOMS_PER_TASK], retake) for i in range(0, len(todo), ROOMS_PER_TASK)]
        n = 0 if len(tasks) <= 1 else worker_count(workers, len(tasks))  # one task: no process to start
        setup = (bank, engine.name, frame, raster_threads(n))
        rooms = map_shards(_write_rooms, tasks, [len(t[2]) for t in tasks], n, progress, unit="room", desc="rooms",
                           initializer=_start_renderer, initargs=setup, done=count - len(todo),
                           describe=lambda t: f"rooms {room_name(t[2][0])}..{room_name(t[2][-1])}")  # fmt: skip
        try:
            for _ in rooms:
                pass
        finally:
            _stop_renderer()  # the one made in this process when n == 0
    return RoomsReport(out, len(todo), count - len(todo), engine.name, engine.detail)


def raster_threads(workers: int) -> int | None:
    """llvmpipe's rasteriser threads per worker (LP_NUM_THREADS): the cores shared out, or 0 (it
    rasterises in the worker's own thread, measured fastest) with a worker per core or more;
    None (its default: every core) in this process or where LP_NUM_THREADS is set. GPU drivers
    ignore it."""
    if workers == 0 or "LP_NUM_THREADS" in os.environ:
        return None
    share = len(os.sched_getaffinity(0)) // workers
    return share if share > 1 else 0


def _finished(out: Path, index: int, retake: bool = False) -> bool:
    """A room is finished when its JPEG is there: it is written after its depth map (and its retake)."""
    name = room_name(index)
    return (out / f"{name}.jpg").exists() and (out / f"{name}{DEPTH_SIDECAR}").exists() and (not retake or (out / RETAKE / f"{name}.jpg").exists())


# ---------------------------------------------------------------- one worker: its renderer, its rooms

_renderer: tuple | None = None  # (bank, renderer) of this process, made by _start_renderer


def _start_renderer(bank: TextureBank, kind: str, frame: tuple[int, int], lp_threads: int | None) -> None:
    """Initializer: this process's renderer (``kind`` as resolved by the parent: never a fallback here)."""
    global _renderer
    if lp_threads is not None:
        os.environ["LP_NUM_THREADS"] = str(lp_threads)  # read when the context is made
    _renderer = (bank, make_renderer(kind, frame, bank.layers))


def _stop_renderer() -> None:
    global _renderer
    if _renderer is not None:
        _renderer[1].close()
        _renderer = None


def _write_rooms(task: tuple[Path, int, list[int], bool]) -> int:
    """Render, encode and write the rooms ``indices`` of the set ``seed`` into ``out`` (and their retakes); returns their count."""
    out, seed, indices, retake = task
    bank, engine = _renderer
    for index in indices:
        scene = sample_scene(seed, index, bank.picker)
        jpeg, png = encode_room(*engine.render(scene))
        name = room_name(index)
        atomic_write_bytes(out / f"{name}{DEPTH_SIDECAR}", png)  # the depth first: a room is its JPEG
        if retake:
            rgb, _ = engine.render(retake_scene(scene, seed, index))
            atomic_write_bytes(out / RETAKE / f"{name}.jpg", codecs.encode_jpeg(rgb, JPEG_QUALITY))
        atomic_write_bytes(out / f"{name}.jpg", jpeg)
    return len(indices)
