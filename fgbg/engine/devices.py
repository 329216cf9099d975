"""Where networks run: the one place that turns ``auto`` into a device, and the ONNX session builder.

Every verb that runs a network asks this module, once, where to run it:

- :func:`resolve_device` (``--device auto|cpu|cuda|cuda:N``: evaluate, predict, depth labelling,
  cut-outs) gives a :class:`Device`: the torch device, its name, and the autocast dtype
  (bf16 where the GPU supports it, fp16 on older GPUs, none on the CPU);
- :func:`resolve_training` (``fgbg train --accelerator --devices --num-nodes --strategy
  --precision``) gives the Lightning Trainer's arguments, with ``auto`` made concrete;
- :func:`onnx_providers` maps a device to ONNX Runtime execution providers, falling back to the
  CPU with a one-line note when ``onnxruntime-gpu`` is not installed; :func:`onnx_session`
  builds every ONNX Runtime session fgbg opens.

Nothing else in fgbg calls ``torch.cuda.is_available()``. torch is imported only when a torch
device is asked for, so ONNX-only paths (``predict --onnx``) run without it. ``FGBG_CPU_ONLY=1`` in
the environment hides the GPUs from fgbg (:data:`CPU_ONLY_ENV`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from fgbg.errors import ConfigError, UserError

CPU_PROVIDERS = ["CPUExecutionProvider"]
CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
NO_CUDA_NOTE = "no CUDA GPU found; running on the CPU"
GPU_EXTRA_HINT = "pip install 'fgbg[gpu]' (onnxruntime-gpu) to run ONNX models on the GPU"
# FGBG_CPU_ONLY=1: fgbg sees no CUDA GPU, as on a machine without one (auto is the CPU, cuda is refused), in this
# process and in the ones it starts; the test suite sets it for every test not marked cuda (tests/conftest.py)
CPU_ONLY_ENV = "FGBG_CPU_ONLY"


class DeviceError(ConfigError):
    """A device that was asked for and is not there (``--device cuda`` without a GPU): one line, exit 2."""


@dataclass(frozen=True)
class Device:
    """A concrete place to run a torch network.

    ``torch``: the torch device string ("cpu", "cuda:0"); ``name``: what a person reads
    ("CPU (16 cores)", "NVIDIA H100 80GB HBM3"); ``autocast``: "bf16", "fp16" or None (fp32);
    ``note``: a one-line remark for the log (``auto`` fell back to the CPU), or None.
    """

    torch: str
    name: str
    autocast: str | None = None
    note: str | None = None

    @property
    def kind(self) -> str:
        """"cpu" or "cuda"."""
        return self.torch.split(":")[0]

    @property
    def index(self) -> int | None:
        return int(self.torch.split(":")[1]) if ":" in self.torch else None

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def dtype(self):
        """The torch autocast dtype (torch.bfloat16 / torch.float16), or None for fp32."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.autocast or "")

    def autocast_context(self):
        """``torch.autocast`` on this device in its dtype, or a no-op context for fp32."""
        import contextlib

        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.kind, dtype=self.dtype)

    def record(self) -> dict:
        """What a run folder or dataset.json records about the device."""
        return {"device": self.torch, "name": self.name, "precision": self.autocast or "fp32"}

    def place(self, net):
        """``net`` (a torch module) moved onto this device; returned.

        On a GPU the weights also go channels_last (NHWC convolutions, faster under autocast) and
        cuDNN benchmarks its kernels during this network's forward passes (:func:`autotuned`: the
        inputs of one verb have one size), and only then. The CPU path leaves the module as it is,
        so its numbers stay those of earlier versions.
        """
        if not self.is_cuda:
            return net
        import torch

        return autotuned(net).to(self.torch, memory_format=torch.channels_last)

    def move(self, x):
        """A CPU tensor onto this device: through pinned memory with ``non_blocking`` on a GPU (the copy
        overlaps the work already queued), unchanged on the CPU."""
        if not self.is_cuda:
            return x
        return (x if x.is_pinned() else x.pin_memory()).to(self.torch, non_blocking=True)


@contextmanager
def cudnn_autotuning(enabled: bool = True) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` on inside the block where ``enabled``, restored after (nothing
    otherwise). It pays where a network sees one input size over and over (a verb's batches, a training
    run); left on, code later in the same process would benchmark too and may pick other kernels, so
    other bits (a local run compared byte for byte with Ray actors)."""
    if not enabled:
        yield
        return
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def autotuned(net):
    """``net`` (a torch module) with :func:`cudnn_autotuning` around each of its forward passes (hooks,
    also when a pass raises); returned."""
    import torch

    before: list[bool] = []

    def on(module, args) -> None:
        before.append(torch.backends.cudnn.benchmark)
        torch.backends.cudnn.benchmark = True

    def off(module, args, output) -> None:
        torch.backends.cudnn.benchmark = before.pop()

    net.register_forward_pre_hook(on)
    net.register_forward_hook(off, always_call=True)
    return net


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without torch's CUDA build, without a GPU, or with FGBG_CPU_ONLY=1 in the
    environment). The only CUDA probe in fgbg."""
    if os.environ.get(CPU_ONLY_ENV, "") not in ("", "0"):
        return 0
    try:
        import torch
    except ImportError:  # ONNX-only installs
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_device(spec: str) -> tuple[str, int | None]:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "gpu"`` -> (kind, index or None).

    Raises:
        DeviceError: anything else, naming the choices.
    """
    text = (spec or "auto").strip().lower()
    kind, _, index = text.partition(":")
    kind = "cuda" if kind == "gpu" else kind
    if kind not in ("auto", "cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(f"--device {spec!r}: expected {DEVICE_CHOICES}")
    return kind, int(index) if index else None


def resolve_device(spec: str = "auto") -> Device:
    """The device for ``--device SPEC``: ``auto`` is the first GPU if there is one, else the CPU (with a note).

    Raises:
        DeviceError: ``cuda``/``cuda:N`` asked for and not there, or a malformed spec.
    """
    kind, index = parse_device(spec)
    if kind == "cpu":
        return cpu_device()
    count = cuda_device_count()
    if kind == "auto":
        return cuda_device(0) if count else cpu_device(NO_CUDA_NOTE)
    if count == 0:
        raise DeviceError(f"--device {spec}: no CUDA GPU is visible here (torch sees none); use --device cpu or auto")
    index = index or 0
    if index >= count:
        raise DeviceError(f"--device {spec}: only {count} CUDA GPU(s) visible (cuda:0 to cuda:{count - 1})")
    return cuda_device(index)


def as_device(spec: str | Device = "auto") -> Device:
    """A :class:`Device` as it is, or ``--device SPEC`` resolved by :func:`resolve_device`."""
    return spec if isinstance(spec, Device) else resolve_device(spec)


def device_arg(text: str) -> str:
    """argparse ``type`` of ``--device`` on every verb: the spec, checked before any work (a usage error otherwise)."""
    import argparse

    try:
        kind, index = parse_device(text)
    except DeviceError:
        raise argparse.ArgumentTypeError(f"expected {DEVICE_CHOICES}, got {text!r}") from None
    return kind if index is None else f"{kind}:{index}"


def cpu_device(note: str | None = None) -> Device:
    return Device("cpu", f"CPU ({os.cpu_count() or 1} cores)", None, note)


def cuda_device(index: int) -> Device:
    import torch

    bf16 = torch.cuda.is_bf16_supported() if hasattr(torch.cuda, "is_bf16_supported") else False
    return Device(f"cuda:{index}", torch.cuda.get_device_name(index), "bf16" if bf16 else "fp16")


# ---------------------------------------------------------------- training (Lightning)


@dataclass(frozen=True)
class TrainingDevices:
    """The Trainer's device arguments with ``auto`` resolved, and what the run folder records."""

    accelerator: str  # "cpu" | "gpu"
    devices: int | list[int]  # a count, or the GPU indices
    num_nodes: int
    strategy: str  # "auto" | "ddp"
    precision: str  # Lightning's: "32-true", "bf16-mixed", "16-mixed"
    name: str  # the device's name
    note: str | None = None

    @property
    def world_size(self) -> int:
        per_node = len(self.devices) if isinstance(self.devices, list) else self.devices
        return per_node * self.num_nodes

    @property
    def on_gpu(self) -> bool:
        return self.accelerator == "gpu"

    def record(self, batch: int) -> dict:
        """run.json's ``devices`` entry; ``global_batch`` is the batch per optimizer step over all ranks."""
        return {
            "accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
            "world_size": self.world_size, "strategy": self.strategy, "precision": self.precision,
            "name": self.name, "batch_per_device": batch, "global_batch": batch * self.world_size,
        }  # fmt: skip


PRECISIONS = {"32": "32-true", "32-true": "32-true", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
              "16": "16-mixed", "16-mixed": "16-mixed", "fp16": "16-mixed"}  # fmt: skip


def parse_devices(text: str | int | list[int] | None) -> int | list[int] | None:
    """``--devices``: None/"auto" (all visible), a count ("8"), or a list of indices ("0,2" or "[0, 2]")."""
    if text is None or isinstance(text, (int, list)):
        return text
    t = text.strip().strip("[]").replace(" ", "")
    if t in ("", "auto", "-1"):
        return None
    try:
        values = [int(v) for v in t.split(",")]
    except ValueError:
        raise DeviceError(f"--devices {text!r}: expected auto, a count (8) or GPU indices (0,2)") from None
    if len(values) == 1 and "," not in t:
        if values[0] < 1:
            raise DeviceError(f"--devices {text!r}: a count must be at least 1")
        return values[0]
    return values


def resolve_training(
    accelerator: str = "auto",
    devices: str | int | list[int] | None = None,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    launched: bool = False,
) -> TrainingDevices:
    """Concrete Trainer device arguments for ``fgbg train``.

    ``auto`` accelerator: the GPUs if any are visible, else the CPU (with a note). ``devices``
    None: every visible GPU, one process on the CPU. ``precision`` None: bf16-mixed on a GPU that
    supports it (16-mixed on older ones), 32-true on the CPU. ``strategy`` auto becomes ddp when
    more than one process trains. ``launched``: ``devices`` is what torchrun or SLURM started, so
    on a machine without a GPU ``auto`` trains that many CPU processes.

    Raises:
        DeviceError: ``gpu`` without a GPU, more GPUs than visible, an unknown name; ``devices``
            given with ``auto`` and no GPU (a count of GPUs: CPU processes need ``cpu``).
    """
    accelerator = (accelerator or "auto").lower()
    if accelerator == "cuda":
        accelerator = "gpu"
    if accelerator not in ("auto", "cpu", "gpu"):
        raise DeviceError(f"--accelerator {accelerator!r}: expected auto, cpu or gpu")
    if strategy not in ("auto", "ddp"):
        raise DeviceError(f"--strategy {strategy!r}: expected auto or ddp")
    if num_nodes < 1:
        raise DeviceError(f"--num-nodes must be at least 1, got {num_nodes}")
    if precision is not None and precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r}: expected 32, bf16-mixed or 16-mixed")
    devices = parse_devices(devices)
    count = 0 if accelerator == "cpu" else cuda_device_count()
    note = None
    if accelerator == "gpu" and count == 0:
        raise DeviceError("--accelerator gpu: no CUDA GPU is visible here; use --accelerator cpu or auto")
    if accelerator == "auto" and not count and devices is not None and not launched:
        n = len(devices) if isinstance(devices, list) else devices
        raise DeviceError(f"--devices {devices_text(devices)}: no CUDA GPU is visible here; for {n} CPU processes (DDP) give --accelerator cpu --devices {n}")
    if accelerator == "auto":
        accelerator = "gpu" if count else "cpu"
        note = None if count else NO_CUDA_NOTE
    if accelerator == "gpu":
        wanted = devices if devices is not None else count
        highest = max(wanted) if isinstance(wanted, list) else wanted - 1
        if highest >= count:
            raise DeviceError(f"--devices {devices}: only {count} CUDA GPU(s) visible here")
        gpu = cuda_device(wanted[0] if isinstance(wanted, list) else 0)
        default_precision = "bf16-mixed" if gpu.autocast == "bf16" else "16-mixed"
        name = gpu.name
    else:
        if isinstance(devices, list):
            raise DeviceError(f"--devices {devices}: a list of indices is for GPUs; on the CPU give a count of processes")
        wanted, default_precision, name = devices or 1, "32-true", cpu_device().name
    resolved = TrainingDevices(accelerator, wanted, num_nodes, strategy, PRECISIONS.get(precision or "", default_precision), name, note)
    if strategy == "auto" and resolved.world_size > 1:
        resolved = TrainingDevices(accelerator, wanted, num_nodes, "ddp", resolved.precision, name, note)
    return resolved


def devices_text(devices: int | list[int]) -> str:
    """``--devices`` as a user types it: 8, or 0,2."""
    return ",".join(map(str, devices)) if isinstance(devices, list) else str(devices)


# ---------------------------------------------------------------- ONNX Runtime


def onnx_providers(spec: str | Device = "auto", warn: Callable[[str], None] | None = None) -> list[str]:
    """ONNX Runtime providers for a device: CUDA (then CPU) on a GPU when onnxruntime-gpu has it, else CPU.

    ``auto`` asks ONNX Runtime alone (no torch needed): its CUDA provider if available. A GPU asked
    for (``cuda``) without the CUDA provider falls back to the CPU with a one-line note to ``warn``.

    Raises:
        DeviceError: a malformed spec.
    """
    import onnxruntime as ort

    if isinstance(spec, Device):
        kind, index = spec.kind, spec.index
    else:
        kind, index = parse_device(spec)
    if kind == "cpu":
        return list(CPU_PROVIDERS)
    if CUDA_PROVIDER in ort.get_available_providers():
        return [(CUDA_PROVIDER, {"device_id": index or 0}), *CPU_PROVIDERS]
    if kind == "cuda" and warn is not None:
        warn(f"note: ONNX Runtime has no CUDA provider here; running the ONNX model on the CPU ({GPU_EXTRA_HINT})")
    return list(CPU_PROVIDERS)


def provider_names(providers: list) -> list[str]:
    """Provider names without their options (what dataset.json records)."""
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def onnx_session(path: Path | str, threads: int = 1, providers: list | None = None, warn: Callable[[str], None] | None = None):
    """An ``onnxruntime.InferenceSession`` for the ONNX file ``path``.

    Args:
        path: the .onnx file.
        threads: intra-op threads (one network call uses this many cores; 0 = ONNX Runtime's
            default, one per physical core); inter-op is 1, execution sequential, graph
            optimisation at its highest level.
        providers: ONNX Runtime execution providers (names or (name, options)), in order of
            preference, e.g. from :func:`onnx_providers`; CPU if None.
        warn: hears one line when the CUDA provider was asked for but the session could not use it
            (onnxruntime-gpu installed without matching CUDA/cuDNN libraries: ONNX Runtime then
            quietly runs on the CPU).

    Raises:
        UserError: the file does not exist, or ONNX Runtime cannot load it (names the file).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX model file; give the path of an .onnx file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=providers or CPU_PROVIDERS)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: not a valid ONNX model, ONNX Runtime cannot load it ({reason})") from None
    asked = CUDA_PROVIDER in provider_names(providers or CPU_PROVIDERS)
    if asked and warn is not None and CUDA_PROVIDER not in session.get_providers():
        warn(f"note: {path.name}: ONNX Runtime could not start its CUDA provider (CUDA/cuDNN libraries?); running on the CPU")
    return session
