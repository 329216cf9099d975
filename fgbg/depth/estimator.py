"""Monocular depth networks behind one small interface, and the scale of their maps.

An estimator takes a batch of RGB images, uint8 (N, H, W, 3), and returns float32
(N, H, W): relative inverse depth (near = larger) at the input's resolution. It does so
in three steps, so that a labelling pipeline (:mod:`fgbg.depth.pipeline`) can run the
first and last on CPU threads while the middle one runs on the device:
``to_input`` (one image -> its network input, CPU), ``infer`` (a stacked batch -> raw
maps at the network's resolution, on the device) and ``to_map`` (one raw map -> the
image's size, CPU). Two backends:

- :class:`OnnxEstimator`: a model file run by ONNX Runtime (MiDaS, Depth Anything ...);
  input size, layout and normalisation from a preset, a JSON sidecar or the file itself;
  on a GPU through the CUDA provider when ``onnxruntime-gpu`` is installed.
- :class:`TransformersEstimator`: ``AutoImageProcessor`` + ``AutoModelForDepthEstimation``
  from a local folder or a hub id (the hub only where the network allows it), on the
  torch device, under autocast (bf16/fp16) on a GPU but for its output head (fp32).

Each estimator's ``description`` (written into dataset.json, part of the store's identity)
says where it ran: ``compute`` = device kind, GPU name, precision and ONNX providers, as the
bytes may differ from one to another; the batch size is not in it (the bytes do not depend on it).

Raw outputs have no common scale; :func:`robust_range` and :func:`apply_scale` map them
to [0, 1] with one scale per background, per store or (the seeds' way) per image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from PIL import Image

from fgbg.config import DEPTH_PRESETS
from fgbg.engine.devices import (
    Device,
    onnx_providers,
    onnx_session,
    provider_names,
    resolve_device,
)
from fgbg.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ROBUST_PERCENTILES = (1.0, 99.0)
# transformers model types whose output is metric depth (far = larger): inverted here
METRIC_DEPTH_TYPES = {"glpn", "zoedepth", "depth_pro", "prompt_depth_anything"}


class EstimatorError(UserError):
    """A depth model that cannot be used; ``str()`` says which and what to do."""


class Estimator(Protocol):
    description: dict  # what dataset.json records about the model (and where it ran: "compute")
    device: Device  # where infer() runs
    threads: int  # on the CPU: network calls to run at once (each single-threaded), see fgbg.depth.pipeline

    def to_input(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> float32 network input of one image (CPU; thread-safe)."""

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Stacked network inputs (N, ...) -> float32 (N, h, w) raw maps at the network's size."""

    def to_map(self, raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """float32 (h, w) raw map -> (H, W) relative inverse depth, near = larger (CPU; thread-safe)."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, H, W) relative inverse depth, near = larger."""


def estimate(estimator: Estimator, images: np.ndarray) -> np.ndarray:
    """The three steps in a row: uint8 (N, H, W, 3) -> float32 (N, H, W)."""
    raw = infer_batch(estimator, [estimator.to_input(im) for im in images])
    return np.stack([estimator.to_map(m, images.shape[1:3]) for m in raw])


def infer_batch(estimator: Estimator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Raw maps of a list of network inputs: one network call per run of inputs of one shape
    (images of one size, or any images for a network with a fixed side), in order."""
    raw: list[np.ndarray] = []
    for _, same in groupby(inputs, key=lambda x: x.shape):
        raw.extend(estimator.infer(np.stack(list(same))))
    return raw


def compute_record(device: Device, precision: str | None, providers: list | None = None) -> dict:
    """Where a network ran, as the store's identity keeps it: kind, GPU name, precision, ONNX providers.

    The CPU's name (its core count) is left out: CPU results do not depend on it.
    """
    record = {"device": device.kind, "precision": precision or "fp32"}
    if device.is_cuda:
        record["name"] = device.name
    if providers is not None:
        record["providers"] = provider_names(providers)
    return record


@dataclass(frozen=True)
class Preprocess:
    """How a network wants its input: square side (a multiple of ``multiple``), mean/std."""

    size: int = 256
    multiple: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"

    @property
    def side(self) -> int:
        return max(self.multiple, round(self.size / self.multiple) * self.multiple)


PRESETS = {name: Preprocess(size=side, multiple=multiple) for name, (side, multiple) in DEPTH_PRESETS.items()}  # ImageNet mean/std


def to_network_input(images: np.ndarray, p: Preprocess) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, s, s) or (N, s, s, 3), resized and normalised."""
    s = p.side
    resized = np.stack([np.asarray(Image.fromarray(im).resize((s, s), Image.BICUBIC)) for im in images])
    if p.layout == "NCHW":
        resized = resized.transpose(0, 3, 1, 2)
        shape = (1, 3, 1, 1)
    else:
        shape = (1, 1, 1, 3)
    gain = (1.0 / (255.0 * np.asarray(p.std, np.float32))).reshape(shape)
    offset = (np.asarray(p.mean, np.float32) / np.asarray(p.std, np.float32)).reshape(shape)
    x = resized.astype(np.float32, order="C")  # a contiguous copy in the wanted layout
    x *= gain
    x -= offset
    return x


def resize_maps(maps: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """float32 (N, h, w) -> (N, H, W), bilinear."""
    if maps.shape[1:] == hw:
        return maps.astype(np.float32)
    size = (hw[1], hw[0])
    return np.stack([np.asarray(Image.fromarray(m.astype(np.float32), "F").resize(size, Image.BILINEAR)) for m in maps])


def squeeze_output(out: np.ndarray, n: int, source: str) -> np.ndarray:
    """A network's output (N, 1, h, w) or (N, h, w) or (N, h, w, 1) -> (N, h, w)."""
    if out.ndim == 4 and 1 in (out.shape[1], out.shape[3]):
        out = out[:, 0] if out.shape[1] == 1 else out[..., 0]
    if out.ndim != 3 or out.shape[0] != n:
        raise EstimatorError(
            f"{source}: the model's output has shape {tuple(out.shape)}; expected one depth map per"
            f" image, (N, 1, H, W) or (N, H, W) with N = {n}; is it a depth model?"
        )
    return out.astype(np.float32)


def read_preprocess_sidecar(path: Path) -> dict:
    """Settings from ``model.json`` beside ``model.onnx`` (size, multiple, mean, std, layout, preset)."""
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return {}
    try:
        return json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        raise EstimatorError(f"{sidecar}: not valid JSON ({e}); fix or remove it") from None


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, sorted)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path.parent if path.is_file() else path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


class OnnxEstimator:
    """A depth network in an ONNX file, run by ONNX Runtime with the providers of ``device``.

    ``device`` None: the CPU. A CUDA device without the CUDA provider (no ``onnxruntime-gpu``)
    falls back to the CPU with a one-line note to ``warn``; ``self.device`` is where it runs.
    """

    def __init__(
        self, path: Path, preset: str | None = None, threads: int = 1, input_size: int | None = None,
        device: Device | None = None, warn: Callable[[str], None] | None = None,
    ):  # fmt: skip
        path = Path(path)
        if not path.is_file():
            raise EstimatorError(f"{path}: depth model file not found; give the path of an .onnx file")
        settings = read_preprocess_sidecar(path)
        preset_flag, preset = preset, preset or settings.get("preset")
        if preset is not None and preset not in PRESETS:
            raise EstimatorError(f"unknown depth preset {preset!r}; choose one of {', '.join(PRESETS)}")
        providers = onnx_providers(device or "cpu", warn)
        self.threads = threads
        self.session = onnx_session(path, 1, providers)  # one thread per call: the same bits for any batch, any core count
        used = self.session.get_providers()
        self.device = device if device is not None and "CUDAExecutionProvider" in used else resolve_device("cpu")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        fixed_side = inp.shape[2] if isinstance(inp.shape[2], int) and inp.shape[2] > 3 else None
        base = PRESETS[preset or "midas-small"]
        fields = {k: settings[k] for k in ("size", "multiple", "mean", "std", "layout") if k in settings}
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        size = input_size or fields.pop("size", None) or (fixed_side if preset is None else None) or base.size
        self.preprocess = Preprocess(**{**base.__dict__, **fields, "size": size})
        if fixed_side is not None and self.preprocess.side != fixed_side:
            raise EstimatorError(fixed_size_mismatch(path, fixed_side, self.preprocess.side, preset_flag, settings))
        self.path = path
        self.description = {
            "backend": "onnxruntime",
            "model": path.name,
            "sha256": sha256_path(path),
            "input": {"side": self.preprocess.side, **{k: v for k, v in self.preprocess.__dict__.items() if k != "size"}},
            "compute": compute_record(self.device, None, used),
        }

    def to_input(self, image: np.ndarray) -> np.ndarray:
        return to_network_input(image[None], self.preprocess)[0]

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        step = self.fixed_batch or len(inputs)
        outs = [self.session.run(None, {self.input_name: inputs[i : i + step]})[0] for i in range(0, len(inputs), step)]
        return squeeze_output(np.concatenate(outs), len(inputs), str(self.path))

    def to_map(self, raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        return resize_maps(raw[None], hw)[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return estimate(self, images)


def fixed_size_mismatch(path: Path, fixed: int, side: int, preset_flag: str | None, settings: dict) -> str:
    """One line: a model fixed at ``fixed`` px asked to run at ``side`` px, naming what asked for it and the fix."""
    sidecar = path.with_suffix(".json").name
    if "size" in settings or "multiple" in settings:
        multiple = settings.get("multiple", 1)
        asked = f"{sidecar} (size {settings.get('size', '-')}, multiple {multiple})"
        fix = f"set \"size\": {fixed} in {sidecar}" + (" and drop \"multiple\"" if fixed % multiple else "")
    elif preset_flag:
        asked, fix = f"--depth-preset {preset_flag}", "drop --depth-preset (the model's own size is then used)"
    else:
        asked, fix = f"{sidecar} (preset {settings.get('preset')})", f"remove \"preset\" from {sidecar}"
    return f"{path}: the model takes {fixed}x{fixed} inputs only, but {asked} gives {side}x{side}; {fix}, or export the model for {side} px"


class TransformersEstimator:
    """A transformers depth-estimation model from a local folder or a hub id, on ``device`` (None: the CPU).

    On a GPU the network runs under ``device.autocast_context()`` (bf16, or fp16 on older GPUs)
    but for its output head, which runs in fp32 (:func:`head_in_full_precision`); the maps come
    back to the CPU as float32. The processor runs on the CPU,
    one image at a time (``to_input``), so that CPU threads can feed the GPU.
    """

    def __init__(self, name_or_path: str, threads: int = 1, device: Device | None = None):
        import torch

        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "transformers":
                raise
            raise EstimatorError(
                f"{name_or_path}: a transformers model folder or hub id needs the transformers package:"
                " pip install 'fgbg[transformers]' (an .onnx file needs nothing extra)"
            ) from None

        self.device = device or resolve_device("cpu")
        self.threads = threads
        # one thread per call: the CPU's parallelism is in the pipeline's threads (the same bits for any core count)
        torch.set_num_threads(1)
        local = Path(name_or_path).is_dir()
        try:
            self.processor = AutoImageProcessor.from_pretrained(name_or_path)
            self.model = AutoModelForDepthEstimation.from_pretrained(name_or_path).eval().to(self.device.torch)
        except (OSError, ValueError) as e:
            where = "the folder has no usable model" if local else (
                "not a local folder, and not available from the Hugging Face hub here (offline, or an unknown id);"
                " download it where the network allows and pass the folder"
            )
            raise EstimatorError(f"{name_or_path}: cannot load the depth model: {where} ({str(e).splitlines()[0]})") from None
        self.metric = self.model.config.model_type in METRIC_DEPTH_TYPES
        # the output head in fp32: under bf16 autocast the maps would keep 8 bits of mantissa (a few levels per map)
        self.precision = self.device.autocast if head_in_full_precision(self.model, self.device.kind) else None
        self.name = name_or_path
        self.description = {
            "backend": "transformers",
            "model": name_or_path if not local else Path(name_or_path).name,
            "model_type": self.model.config.model_type,
            "sha256": sha256_path(Path(name_or_path)) if local else None,
            "output": "metric depth, inverted" if self.metric else "relative inverse depth",
            "compute": compute_record(self.device, self.precision),
        }

    def to_input(self, image: np.ndarray) -> np.ndarray:
        x = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        # for the GPU, half the bytes to stack and copy: fp16 steps (~0.002) are far finer than a uint8 level (~0.017)
        return x.half().numpy() if self.device.is_cuda else x.float().numpy()

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(inputs)
        mixed = self.device.autocast_context() if self.precision else contextlib.nullcontext()
        with torch.inference_mode(), mixed:
            if self.device.is_cuda:  # autocast runs the network in bf16 (fp16), its head in fp32
                predicted = self.model(pixel_values=x.to(self.device.torch).float()).predicted_depth
            else:  # one image per call: torch's CPU kernels round a batch differently from its images alone
                predicted = torch.cat([self.model(pixel_values=one).predicted_depth for one in x.split(1)])
        return squeeze_output(predicted.cpu().float().numpy(), len(inputs), self.name)  # bf16 crosses the bus, then float32

    def to_map(self, raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        if self.metric:
            raw = 1.0 / np.maximum(raw, 1e-6)
        return resize_maps(raw[None], hw)[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return estimate(self, images)


def head_in_full_precision(model, device_kind: str) -> bool:
    """Make the module that outputs ``predicted_depth`` (``metric_head`` or ``head``, as transformers'
    depth models name it) run with autocast off on float32 inputs, so that mixed precision rounds
    the features, not the depth values; False when the model has no such module (then run it all in fp32).

    Under bf16 autocast a map of values 4.97-5.03 (GLPN's sigmoid x max depth) keeps 2-3 distinct levels;
    with the head in fp32 it stays within 0.1% of the fp32 map (tests/test_estimator.py).
    """
    import torch

    heads = [getattr(model, name, None) for name in ("metric_head", "head")]
    head = next((h for h in heads if isinstance(h, torch.nn.Module)), None)
    if head is None:
        return False
    forward = head.forward

    def fp32_forward(*args, **kwargs):
        with torch.autocast(device_kind, enabled=False):
            return forward(*to_float32(args), **to_float32(kwargs))

    head.forward = fp32_forward  # this instance only; nn.Module.__call__ (and its hooks) call it
    return True


def to_float32(x):
    """Floating tensors below 32 bits (bf16/fp16 from autocast) as float32, in any nesting of lists, tuples and dicts."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.element_size() < 4 else x
    if isinstance(x, (list, tuple)):
        return type(x)(to_float32(v) for v in x)
    if isinstance(x, dict):
        return {k: to_float32(v) for k, v in x.items()}
    return x


def load_estimator(
    model: str, preset: str | None = None, threads: int = 1, device: str | Device = "cpu",
    warn: Callable[[str], None] | None = None,
) -> Estimator:  # fmt: skip
    """An ONNX file (``*.onnx``) or a transformers folder / hub id on ``device``, checked on a probe image.

    Args:
        threads: on the CPU, the network calls a labelling pipeline runs at once, each on one
            thread (the same bits whatever the core count); on a GPU the pipeline's CPU threads
            feed the one network instead.
        device: ``--device`` (auto, cpu, cuda, cuda:N) or a resolved :class:`Device`.
        warn: where the one-line notes go (``auto`` found no GPU; no CUDA provider for ONNX); None: nowhere.

    Raises:
        EstimatorError: missing file, unknown id offline, or an output that is not a depth map.
        DeviceError: ``cuda`` asked for and no GPU visible.
    """
    if not model:
        raise EstimatorError("this depth source needs a model: pass --depth-model PATH_OR_ID")
    device = device if isinstance(device, Device) else resolve_device(device)
    if model.endswith(".onnx") or Path(model).is_file():
        estimator = OnnxEstimator(Path(model), preset=preset, threads=threads, device=device, warn=warn)
    else:
        estimator = TransformersEstimator(model, threads=threads, device=device)
    probe = np.full((1, 48, 64, 3), 128, np.uint8)
    out = estimator(probe)
    if out.shape != (1, 48, 64) or not np.isfinite(out).all():
        raise EstimatorError(f"{model}: the model's output on a test image is not a finite depth map ({out.shape})")
    if device.note and warn is not None:  # once the model is usable: a mistake in it stays one line
        warn(f"note: {device.note}")
    return estimator


def worker_threads(workers: int) -> int:
    """Threads per worker process so that all workers together use the cores once."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# ---------------------------------------------------------------- scale


def robust_range(raw: np.ndarray) -> tuple[float, float]:
    """(1st, 99th) percentile of a raw map: the scale that maps it to [0, 1]."""
    lo, hi = np.percentile(raw, ROBUST_PERCENTILES)
    if hi <= lo:
        hi = lo + 1e-6
    return float(lo), float(hi)


def apply_scale(raw: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, int]:
    """Raw inverse depth -> float32 in [0, 1] by (raw - lo) / (hi - lo), clipped.

    Returns:
        (the map, the number of pixels that were clipped).
    """
    scaled = (raw.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    clipped = int(np.count_nonzero((scaled < 0) | (scaled > 1)))
    return np.clip(scaled, 0.0, 1.0), clipped


def image_range(raw: np.ndarray) -> tuple[float, float]:
    """Per-image min and max: what the seeds did (``--depth-norm image``), no common scale."""
    lo, hi = float(raw.min()), float(raw.max())
    return lo, hi if hi > lo else lo + 1e-6


def bg_scales(raw_bg_maps: list[np.ndarray], norm: str) -> list[tuple[float, float]]:
    """One (lo, hi) per bg: its own robust range (``bg``), or the union of all (``dataset``)."""
    ranges = [robust_range(m) for m in raw_bg_maps]
    if norm == "dataset":
        union = (min(lo for lo, _ in ranges), max(hi for _, hi in ranges))
        return [union] * len(ranges)
    return ranges
