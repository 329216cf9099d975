"""Every GPU figure fgbg claims, measured in one prepared run on a bare GPU machine (issue 20).

    benchmarks/gpu_wheels.sh wheels/                                   # on a machine with a package index
    python benchmarks/gpu_check.py --wheels wheels/ --out gpu.json      # on the GPU machine, from the repository
    python benchmarks/gpu_check.py --smoke --out smoke.json             # tiny sizes on the CPU, in seconds

The GPU machine needs Python 3.12 with a CUDA torch, lightning, torchmetrics, transformers,
onnxruntime, numpy, pillow and scipy, and no package index: the rest (simplejpeg, moderngl,
glcontext, webdataset, pycocotools, opencv-python-headless) comes from the wheels folder that
``gpu_wheels.sh`` fills, then fgbg itself (``pip install --no-deps -e .``). Parts, in this order,
each in its own process with its own time box, all within ``--budget-minutes`` (default 8); a part
that does not fit in what is left is skipped and says so (``--parts NAME`` runs it alone later):

- ``install``: the wheels, then fgbg;
- ``machine``: GPU, torch, CUDA and cuDNN versions, cores, memory, /dev/shm, EGL libraries;
- ``cuda_tests``: ``pytest -m cuda``: counts, and each failure's first line;
- ``train``: ``bench_train.py`` at 224 px, batch 256, bf16, channels_last on a 40k-sample store made
  here on every core: steady samples/s, data wait share, peak GPU memory and RSS;
- ``learning``: ``fgbg train`` on the demo assets with 2 backgrounds and 3 foregrounds held out of
  the store, for --learn-minutes at 224 px, then ``fgbg evaluate`` on a store made of those alone:
  mask IoU beside the differencing baseline, depth delta1 and RMSE;
- ``depth``: a Depth-Anything-V2-Small-sized transformers network (``bench_depth.py``'s, random
  weights) at 518 px, fgbg's own inference: samples/s at batch 1 and at the fastest batch; then
  ``generate --depth estimator`` end to end (``bench_depth.py``);
- ``rooms``: ``fgbg rooms`` through EGL and through the numpy fallback (``bench_rooms.py``'s timers);
- ``train_compile``: ``train`` again with ``--compile``.

``--out FILE`` (JSON) is rewritten after every part, so a check stopped half-way keeps what it
measured, and each part's output is kept beside it (``gpu-logs/`` for ``gpu.json``); a table of
every figure (value, unit, goal) ends the run. ``--smoke`` runs every part at tiny sizes on the CPU
(FGBG_CPU_ONLY=1, also on a GPU machine), side by side, so that this script cannot rot between the
times a GPU is at hand (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
CPU_ONLY_ENV = "FGBG_CPU_ONLY"  # fgbg.engine.devices.CPU_ONLY_ENV: fgbg sees no GPU
PARTS = ("install", "machine", "cuda_tests", "train", "learning", "depth", "rooms", "channels", "train_compile")
# seconds: (the most a part may take, the least it needs to be started) on a GPU machine
BOXES = {"install": (120, 20), "machine": (60, 10), "cuda_tests": (200, 60), "train": (150, 60), "learning": (210, 120),
         "depth": (120, 45), "rooms": (60, 20), "channels": (45, 15), "train_compile": (180, 90)}  # fmt: skip
SMOKE_BOX = 120  # each part's box in --smoke
END_MARGIN_S = 3.0  # what the table and the last write keep of the budget
STORE_SAMPLES = 40_000  # the throughput store (issue 20)
DEMO_BGS, DEMO_FGS, FLIPS = 10, 17, 2
HELD_OUT_BGS, HELD_OUT_FGS = 2, 3
BUILD_BACKEND = "setuptools"  # in the wheels folder only to build fgbg (pip's isolated build): not installed
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # of the demo assets (one fg is a JPEG on white)
SAMPLE_BYTES_PER_PIXEL = 9  # a compact training sample: bg and fg_bg RGB uint8, mask uint8, depth up to uint16


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: FULL on the GPU, SMOKE on the CPU."""

    train_size: int
    batch: int
    placements: int  # per (bg, fg, flip) of the throughput store
    warmup_steps: int
    learn_size: int
    learn_placements: int  # per (bg, fg, flip) of the learning store (8 bgs x 14 fgs)
    held_out_placements: int  # of the held-out store (2 bgs x 3 fgs)
    depth_input: int  # the depth network's side, pixels (a multiple of 14)
    depth_batches: tuple[int, ...]
    depth_seconds: float  # timed per batch size, at least
    depth_arch: str  # bench_depth.py --arch of the end-to-end figure
    depth_e2e: tuple[str, ...]  # bench_depth.py's other arguments
    rooms_size: int
    egl_rooms: int
    numpy_rooms: int
    cuda_tests: str  # the test files, a glob: those that hold tests marked cuda are collected


FULL = Sizes(
    train_size=224, batch=256, placements=math.ceil(STORE_SAMPLES / (DEMO_BGS * DEMO_FGS * FLIPS)), warmup_steps=10,
    learn_size=224, learn_placements=90, held_out_placements=20,
    depth_input=518, depth_batches=(1, 4, 8, 16, 32, 64), depth_seconds=1.0, depth_arch="depth-anything-small",
    depth_e2e=("--placements", "2", "--size", "224"),
    rooms_size=224, egl_rooms=2000, numpy_rooms=100, cuda_tests="tests/test_*.py",
)  # fmt: skip
SMOKE = Sizes(
    train_size=32, batch=8, placements=1, warmup_steps=2, learn_size=32, learn_placements=1, held_out_placements=1,
    depth_input=28, depth_batches=(1, 2), depth_seconds=0.1, depth_arch="tiny-onnx",
    depth_e2e=("--placements", "1", "--bgs", "1", "--fgs", "1", "--size", "32", "--shard-size", "2", "--workers", "1"),
    rooms_size=32, egl_rooms=10, numpy_rooms=3, cuda_tests="tests/test_data.py",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What a part's process is told (as JSON): where to work and how big."""

    smoke: bool
    work: str
    wheels: str | None
    box: float  # seconds this part may take
    learn_minutes: float

    @property
    def sizes(self) -> Sizes:
        return SMOKE if self.smoke else FULL

    @property
    def folder(self) -> Path:
        return Path(self.work)


# ---------------------------------------------------------------- what a part reports


class Figures:
    """A part's figures, written to its result file at each one, so a part stopped by its box keeps them."""

    def __init__(self, path: Path) -> None:
        self.path, self.figures, self.notes = path, [], []

    def add(self, name: str, value, unit: str = "", goal: str | None = None, met: bool | None = None) -> None:
        """``value`` (a number or a short text) in ``unit``; ``goal`` as text and whether it is ``met``."""
        value = round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        self.figures.append({"name": name, "value": value, "unit": unit, "goal": goal, "met": met})
        print(f"figure: {name}: {value} {unit}", flush=True)
        self.save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps({"figures": self.figures, "notes": self.notes}, indent=1))


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``cmd`` from the repository root, its output in this part's log; raises on failure (the part fails)."""
    print("$ " + shlex.join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, timeout=max(1.0, timeout), check=True, **kwargs)


def time_left(s: Settings, started: float, margin: float = 5.0) -> float:
    """Seconds of the part's box left, less ``margin`` for reporting."""
    return s.box - (time.monotonic() - started) - margin


def loader_workers(batch: int, size: int) -> int | None:
    """Loader workers per loader that /dev/shm holds at ``batch`` x ``size`` px (train and validation
    loaders, 2 batches ahead each), or None when fgbg's default (a worker per core but one) fits.
    Containers often give /dev/shm 64 MB; workers past it die with "bus error"."""
    cores = os.cpu_count() or 1
    batch_bytes = batch * size * size * SAMPLE_BYTES_PER_PIXEL
    free = shutil.disk_usage("/dev/shm").free if Path("/dev/shm").is_dir() else 0
    fit = int(0.8 * free // (2 * 2 * batch_bytes))
    return None if fit >= cores - 1 else max(0, fit)


# ---------------------------------------------------------------- the parts (each in its own process)


def part_install(s: Settings, out: Figures) -> None:
    """The wheels of --wheels (but the build backend), then fgbg with --no-deps, editable."""
    wheels = sorted(p for p in Path(s.wheels).glob("*.whl") if not p.name.startswith(BUILD_BACKEND + "-"))
    if not wheels:
        raise RuntimeError(f"{s.wheels}: no wheels; fill it with benchmarks/gpu_wheels.sh {s.wheels}")
    started = time.monotonic()
    pip(["install", "--no-index", "--find-links", s.wheels, "--no-deps", *map(str, wheels)], s, started)
    pip(["install", "--no-index", "--find-links", s.wheels, "--no-deps", "-e", str(ROOT)], s, started)
    out.add("wheels installed", len(wheels), "wheels")
    out.add("install time", time.monotonic() - started, "s")
    out.note("installed: " + ", ".join(p.name.split("-")[0] + " " + p.name.split("-")[1] for p in wheels) + ", fgbg (editable)")


def pip(args: list[str], s: Settings, started: float) -> None:
    """``python -m pip ARGS``; again with --break-system-packages where the Python is a system one (PEP 668)."""
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    try:
        run(cmd, time_left(s, started), capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        said = (e.stdout or "") + (e.stderr or "")
        print(said, flush=True)
        if "externally-managed" not in said:
            raise RuntimeError(f"pip {args[0]} failed: {last_line(said)}") from None
        run([*cmd, "--break-system-packages"], time_left(s, started))


def part_machine(s: Settings, out: Figures) -> None:
    """What the figures were measured on."""
    import importlib.metadata as md

    import torch

    from fgbg.engine.devices import cuda_device_count

    gpus = cuda_device_count()
    if gpus:
        props = torch.cuda.get_device_properties(0)
        out.add("GPU", f"{gpus} x {props.name}")
        out.add("GPU memory", props.total_memory / 2**30, "GiB")
    else:
        out.add("GPU", "none visible" + (" (--smoke: FGBG_CPU_ONLY=1)" if s.smoke else ""))
    out.add("torch", torch.__version__)
    out.add("CUDA", torch.version.cuda or "none (a CPU build of torch)")
    out.add("cuDNN", str(torch.backends.cudnn.version() or "none"))
    out.add("Python", platform.python_version())
    out.add("CPU cores", os.cpu_count() or 1, "cores")
    out.add("memory", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, "GiB")
    shm = shutil.disk_usage("/dev/shm").free / 2**30 if Path("/dev/shm").is_dir() else 0.0
    need = 2 * 2 * max(1, (os.cpu_count() or 1) - 1) * FULL.batch * FULL.train_size**2 * SAMPLE_BYTES_PER_PIXEL / 2**30
    out.add("/dev/shm free", shm, "GiB", goal=f">= {need:.1f} (loader workers at 224 px, batch 256)", met=shm >= need)
    versions = []
    for name in ("lightning", "torchmetrics", "transformers", "onnxruntime", "numpy", "moderngl", "simplejpeg", "opencv-python-headless"):
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} missing")
    out.note(", ".join(versions))
    out.note(egl_libraries())


def egl_libraries() -> str:
    """Which EGL libraries the rooms renderer can find: libglvnd's libEGL and NVIDIA's vendor library."""
    import ctypes
    import ctypes.util

    found = []
    for lib in ("EGL", "EGL_nvidia"):
        path = ctypes.util.find_library(lib)
        try:
            ctypes.CDLL(path or f"lib{lib}.so.0")
            found.append(f"lib{lib}: {path or 'loads'}")
        except OSError:
            found.append(f"lib{lib}: missing")
    vendors = sorted(p.name for d in ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d") for p in Path(d).glob("*.json"))
    return "EGL: " + ", ".join(found) + f"; glvnd EGL vendors: {', '.join(vendors) or 'none'}"


def part_cuda_tests(s: Settings, out: Figures) -> None:
    """``pytest -m cuda`` on the files that hold such tests (others may import what a bare machine lacks,
    skimage, kornia ...): counts, and each failure's (or collection error's) first line."""
    started, xml = time.monotonic(), s.folder / "cuda-tests.xml"
    files = [str(f.relative_to(ROOT)) for f in sorted(ROOT.glob(s.sizes.cuda_tests)) if "mark.cuda" in f.read_text()]
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           f"--junitxml={xml}", *files]  # fmt: skip
    print("$ " + shlex.join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, timeout=max(1.0, time_left(s, started)))
    if proc.returncode not in (0, 1, 5) or (proc.returncode != 5 and not xml.exists()):
        raise RuntimeError(f"pytest ended with exit code {proc.returncode} (see the log)")
    counts, failures = junit_counts(xml) if xml.exists() else ({"tests": 0, "failures": 0, "errors": 0, "skipped": 0}, [])
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    out.add("cuda tests passed", passed, "tests")
    out.add("cuda tests failed", counts["failures"] + counts["errors"], "tests", goal="0", met=counts["failures"] + counts["errors"] == 0)
    out.add("cuda tests skipped", counts["skipped"], "tests")
    for test, line in failures:
        out.note(f"FAILED {test}: {line}")


def junit_counts(xml: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(tests, failures, errors, skipped) and (test, first line of its failure) from pytest's JUnit XML."""
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(suite.get(k, 0)) for suite in suites) for k in ("tests", "failures", "errors", "skipped")}
    failures = []
    for case in root.iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            text = bad.get("message") or bad.text or bad.tag
            failures.append((f"{case.get('classname')}::{case.get('name')}", first_line(text)))
    return counts, failures


def part_train(s: Settings, out: Figures, compile: bool = False) -> None:
    """``bench_train.py``: one epoch on the throughput store (made on every core the first time)."""
    z, started = s.sizes, time.monotonic()
    folder = s.folder / "train"
    cmd = [sys.executable, str(BENCHMARKS / "bench_train.py"), "--out", str(folder), "--size", str(z.train_size),
           "--batch", str(z.batch), "--placements", str(z.placements), "--epochs", "1", "--minutes", f"{max(1.0, s.box / 60):.1f}",
           "--warmup-steps", str(z.warmup_steps)]  # fmt: skip
    if s.smoke:
        cmd += ["--accelerator", "cpu", "--workers", "0", "--threads", "1"]
    else:
        cmd += ["--accelerator", "gpu"]
        workers = loader_workers(z.batch, z.train_size)
        if workers is not None:
            cmd += ["--workers", str(workers)]
            out.note(f"loader workers cut to {workers} per loader: /dev/shm holds no more (raise it: docker run --shm-size 8g)")
    if compile:
        cmd.append("--compile")
    run(cmd, time_left(s, started))
    bench = json.loads((folder / "bench.json").read_text())
    steady, whole = bench["steady_samples_per_s"], bench["summary"]["train_samples_per_s"]
    if steady:
        out.add(f"training, steady (after {z.warmup_steps} steps)", steady, "samples/s", goal=">= 4000", met=steady >= 4000)
        out.add("a 400k-sample epoch at that speed (extrapolated)", 400_000 / steady, "s", goal="< 100", met=400_000 / steady < 100)
    out.add("training, whole epoch", whole, "samples/s")
    share = 100 * bench["data_wait_share"]
    out.add("waiting for data", share, "% of step time", goal="< 20", met=share < 20)
    if bench["peak_gpu_mib"] is not None:
        out.add("peak GPU memory", bench["peak_gpu_mib"], "MiB")
    out.add("peak RSS, training process", bench["peak_rss_mb"], "MB")
    out.add("peak RSS, largest child (loader worker)", bench["peak_worker_rss_mb"], "MB")
    out.add("loader alone", bench["loader_samples_per_s"], "samples/s", goal=">= 2x training", met=bench["loader_samples_per_s"] >= 2 * whole)
    n = bench["summary"]["devices"]
    out.note(f"{n['name']}, {n['precision']}, batch {z.batch}, {z.train_size} px, channels_last{', torch.compile' if compile else ''};"
             f" {bench['metrics']['n_images']} held-out images, mask IoU {bench['metrics']['mask_iou']:.3f} after one epoch")  # fmt: skip


def part_learning(s: Settings, out: Figures) -> None:
    """Train on the demo assets without 2 bgs and 3 fgs; evaluate on a store of those alone."""
    from fgbg.config import GenerateConfig
    from fgbg.demo import demo_assets
    from fgbg.learn.evaluate import evaluate
    from fgbg.learn.train import TrainConfig, train
    from fgbg.make.generate import generate

    z, started, root = s.sizes, time.monotonic(), s.folder / "learning"
    bg, fg = (sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for folder in demo_assets())
    sets = {"seen": (bg[:-HELD_OUT_BGS], fg[:-HELD_OUT_FGS], z.learn_placements),
            "held-out": (bg[-HELD_OUT_BGS:], fg[-HELD_OUT_FGS:], z.held_out_placements)}  # fmt: skip
    stores = {}
    for name, (bgs, fgs, placements) in sets.items():
        folders = [copied(files, root / name / kind) for files, kind in ((bgs, "bg"), (fgs, "fg"))]
        config = GenerateConfig(size=z.learn_size, fg_size=z.learn_size // 2, placements=placements)
        stores[name] = root / name / "store"
        generate(*folders, stores[name], config, progress=False, warn=print)
    workers = 0 if s.smoke else loader_workers(z.batch, z.learn_size)
    minutes = None if s.smoke else s.learn_minutes  # the smoke trains one epoch: a budget would be mostly start-up
    config = TrainConfig(size=z.learn_size, batch=z.batch, epochs=1 if s.smoke else None, max_minutes=minutes, workers=workers,
                         threads=1 if s.smoke else None)  # fmt: skip
    summary = train(stores["seen"], root / "run", config, progress=False, log=print)
    m = evaluate(root / "run" / "best.ckpt", stores["held-out"], root / "eval", split="all", progress=False, log=print, warn=print)
    out.add("held-out mask IoU (unseen bgs and fgs)", m["mask_iou"], goal=">= 0.97 within 10 GPU-minutes", met=m["mask_iou"] >= 0.97)
    out.add("differencing baseline mask IoU", m["baseline_mask_iou"], goal="below the model's", met=m["mask_iou"] > m["baseline_mask_iou"])
    out.add("held-out depth delta1", m["depth_delta1"])
    out.add("held-out depth RMSE", m["depth_rmse"])
    out.add("training", summary["train_seconds"] / 60, "min")
    out.add("training speed", summary["train_samples_per_s"], "samples/s")
    out.note(f"{summary['global_step']} steps of {z.batch} at {z.learn_size} px on {len(sets['seen'][0])} bgs x {len(sets['seen'][1])} fgs;"
             f" evaluated on {m['n_images']} composites of {HELD_OUT_BGS} other bgs x {HELD_OUT_FGS} other fgs;"
             f" {time.monotonic() - started:.0f} s in all")  # fmt: skip


def copied(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def part_depth(s: Settings, out: Figures) -> None:
    """The DA-V2-Small-sized network through fgbg's estimator, batch by batch; then generate end to end."""
    import numpy as np
    import torch

    sys.path.insert(0, str(BENCHMARKS))
    from bench_depth import depth_anything_v2_small

    from fgbg.depth.estimator import load_estimator

    z, started = s.sizes, time.monotonic()
    model = depth_anything_v2_small(s.folder / "depth-anything-v2-small", z.depth_input)
    estimator = load_estimator(str(model), device="auto", warn=print)
    dtype = np.float16 if estimator.device.is_cuda else np.float32  # what to_input gives on each
    x = np.random.default_rng(0).standard_normal((max(z.depth_batches), 3, z.depth_input, z.depth_input)).astype(dtype)
    rates = {}
    for batch in z.depth_batches:
        try:
            rates[batch] = inference_rate(estimator, x[:batch], z.depth_seconds)
        except torch.cuda.OutOfMemoryError:
            out.note(f"batch {batch}: out of GPU memory; larger batches not tried")
            break
        print(f"network, batch {batch}: {rates[batch]:.1f} samples/s", flush=True)
    best = max(rates, key=rates.get)
    where = f"{estimator.device.name}, {estimator.description['compute']['precision']}"
    out.add(f"network at {z.depth_input} px, batch 1", rates[1], "samples/s")
    out.add(f"network, fastest batch ({best})", rates[best], "samples/s")
    out.add("fastest batch / batch 1", rates[best] / rates[1], "x", goal=">= 3", met=rates[best] / rates[1] >= 3)
    out.note(f"network: {', '.join(f'batch {b} {r:.1f}/s' for b, r in rates.items())} ({where})")
    del estimator
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    e2e_batch = max(2, best)
    cmd = [sys.executable, str(BENCHMARKS / "bench_depth.py"), "--device", "cpu" if s.smoke else "cuda", "--arch", z.depth_arch,
           "--input-size", str(z.depth_input), "--batch", str(e2e_batch), *z.depth_e2e]  # fmt: skip
    said = run(cmd, time_left(s, started), capture_output=True, text=True).stdout
    print(said, flush=True)
    rate = r"batch\s+(\d+): \d+ samples in\s+[\d.]+ s =\s+([\d.]+) samples/s"
    e2e = {int(b): float(r) for b, r in re.findall("^" + rate, said, re.M)}
    out.add(f"generate --depth estimator, batch {e2e_batch}", e2e[e2e_batch], "samples/s", goal=">= 400", met=e2e[e2e_batch] >= 400)
    out.add("generate --depth estimator, batch 1", e2e[1], "samples/s")
    for b, r in re.findall("^estimator-per-bg, " + rate, said, re.M):
        out.add(f"generate --depth estimator-per-bg, batch {b}", float(r), "samples/s")
    out.note(f"end to end: {z.depth_arch}, " + " ".join(z.depth_e2e))


def inference_rate(estimator, inputs, seconds: float) -> float:
    """Samples/s of ``estimator.infer`` on ``inputs`` (copies both ways included), over at least
    ``seconds`` and 3 calls, after 2 calls of warm-up (cuDNN's autotuning, allocations)."""
    for _ in range(2):
        estimator.infer(inputs)
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        estimator.infer(inputs)  # returns numpy: the device is done
        calls += 1
    return calls * len(inputs) / (time.perf_counter() - started)


def part_rooms(s: Settings, out: Figures) -> None:
    """Rooms/s through EGL and through the numpy fallback, rendered in this process and by ``fgbg rooms``."""
    sys.path.insert(0, str(BENCHMARKS))
    from bench_rooms import pin, render_rate, write_rate

    z = s.sizes
    cores = pin(len(os.sched_getaffinity(0)))
    rates = {}
    for kind, count in (("egl", z.egl_rooms), ("numpy", z.numpy_rooms)):
        try:
            rate, cpu_ms, detail = render_rate(kind, z.rooms_size, count)
        except Exception as e:  # noqa: BLE001 (no EGL here: say so, go on with the fallback)
            out.note(f"{kind}: cannot render here: {first_line(str(e))}")
            continue
        rates[kind], _ = write_rate(kind, z.rooms_size, count, workers=len(cores))
        out.add(f"{kind}: render ({count} rooms at {z.rooms_size} px)", rate, "rooms/s")
        goal = (">= 2000", rates[kind] >= 2000) if kind == "egl" else (None, None)
        out.add(f"{kind}: fgbg rooms end to end ({len(cores)} workers)", rates[kind], "rooms/s", *goal)
        out.note(f"{kind}: {detail}; {cpu_ms:.2f} CPU ms per room")
        if kind == "egl" and "llvmpipe" in detail.lower():
            out.note("EGL ran on Mesa's llvmpipe (the CPU), not the GPU: NVIDIA's EGL vendor library is missing"
                     " (libEGL_nvidia.so.0 and /usr/share/glvnd/egl_vendor.d/10_nvidia.json, with libglvnd's libEGL.so.1)")  # fmt: skip
    if len(rates) == 2:
        out.add("egl / numpy", rates["egl"] / rates["numpy"], "x")


def part_channels(s: Settings, out: Figures) -> None:
    """``bench_channels.py``: the refiner's first conv on 11 channels against its zero-padded 16, and the whole
    network with the padding off and on (fgbg pads where the network runs channels_last on a GPU: does it pay?)."""
    sys.path.insert(0, str(BENCHMARKS))
    import contextlib

    import torch
    from bench_channels import conv_step, net_step, timed

    on_gpu = not s.smoke and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    mixed = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_gpu else contextlib.nullcontext
    batch, size = (64, 224) if not s.smoke else (2, 32)
    conv = {c: timed(conv_step(c, batch, size, device, mixed), device, 5) for c in (11, 16)}
    out.add("refiner's first conv, 16 channels / 11", conv[16] / conv[11], "x", goal="< 1 to pad", met=conv[16] < conv[11])
    net = {pad: timed(net_step(pad, batch, size, device, mixed), device, 5) for pad in (False, True)}
    out.add("whole network, padded / unpadded", net[True] / net[False], "x", goal="< 1 to pad", met=net[True] < net[False])
    out.note(f"{device.type}, batch {batch} at {size} px, forward + backward, channels_last; ms per batch: conv {1e3 * conv[11]:.1f} / {1e3 * conv[16]:.1f},"
             f" network {1e3 * net[False]:.1f} / {1e3 * net[True]:.1f}")


PART_FUNCTIONS = {
    "install": part_install, "machine": part_machine, "cuda_tests": part_cuda_tests, "train": part_train,
    "learning": part_learning, "depth": part_depth, "rooms": part_rooms, "channels": part_channels,
    "train_compile": lambda s, out: part_train(s, out, compile=True),
}  # fmt: skip


def run_part(name: str, settings_file: Path) -> int:
    """In a part's own process: run it, its figures into results/NAME.json beside its settings."""
    s = Settings(**json.loads(settings_file.read_text()))
    out = Figures(settings_file.parent / f"{name}.result.json")
    out.save()
    PART_FUNCTIONS[name](s, out)
    return 0


# ---------------------------------------------------------------- the check (the parent process)


def check(args: argparse.Namespace) -> int:
    """Every part of ``args.parts`` within the budget: one after another on the GPU (none disturbs another's
    figures), side by side in --smoke (they are tiny; it keeps the test short); the report after each."""
    started, budget, out = time.monotonic(), args.budget_minutes * 60, Path(args.out)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fgbg-gpu-check-"))
    logs = out.parent / f"{out.stem}-logs"  # beside the report: each part's output, kept
    for folder in (work / "parts", logs):
        folder.mkdir(parents=True, exist_ok=True)
    report = {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "smoke": args.smoke, "budget_s": budget, "logs": str(logs), "parts": {}}  # fmt: skip
    env = child_env(args.smoke)
    running: dict[str, Running] = {}
    try:
        for name in args.parts:
            left = budget - (time.monotonic() - started) - END_MARGIN_S
            cap, least = (SMOKE_BOX, 0) if args.smoke else BOXES[name]
            cap = min(args.box.get(name, cap), left)
            reason = skip_reason(name, args, left, least)
            print(f"[{time.monotonic() - started:5.0f} s] {name}: {reason or f'running, box {cap:.0f} s'}", file=sys.stderr, flush=True)
            report["parts"][name] = {"skipped": reason} if reason else {"running": True}
            if not reason:
                settings = Settings(args.smoke, str(work), args.wheels, cap, args.learn_minutes)
                running[name] = start_part(name, settings, env, work / "parts", logs)
                if not args.smoke:
                    report["parts"][name] = finish_part(running.pop(name))
            save_report(report, out, started)
        for name, part in running.items():
            report["parts"][name] = finish_part(part)
            save_report(report, out, started)
    finally:
        for part in running.values():
            stop_group(part.proc)
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(report))
    return 1 if any("failed" in p for p in report["parts"].values()) else 0


def save_report(report: dict, out: Path, started: float) -> None:
    report["wall_s"] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(report, indent=1))


def skip_reason(name: str, args: argparse.Namespace, left: float, least: float) -> str | None:
    if name == "install" and not args.wheels:
        return "no --wheels DIR given: the packages installed here are used as they are"
    if name == "train_compile" and args.smoke:
        return "--smoke: torch.compile on the CPU builds C++ for minutes; measured on the GPU only"
    if left < max(least, 1.0):
        return f"not started: {max(left, 0):.0f} s of the {args.budget_minutes * 60:.0f} s budget left, it needs {least:.0f} s; run it alone with --parts {name}"
    return None


@dataclass
class Running:
    """A part's process, started at ``started`` (time.monotonic) with ``box`` seconds to run."""

    proc: subprocess.Popen
    box: float
    started: float
    result: Path
    log: Path


def start_part(name: str, s: Settings, env: dict, folder: Path, logs: Path) -> Running:
    """Part ``name`` in its own process (and process group), its output to ``logs/NAME.log``."""
    settings, log = folder / f"{name}.settings.json", logs / f"{name}.log"
    settings.write_text(json.dumps(asdict(s)))
    with open(log, "w") as stream:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--part", name, "--settings", str(settings)],
                                cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return Running(proc, s.box, time.monotonic(), folder / f"{name}.result.json", log)


def finish_part(part: Running) -> dict:
    """A started part's figures once it ends, or at the end of its box (then stopped); or why there are none."""
    try:
        rc, over = part.proc.wait(timeout=max(0.0, part.box - (time.monotonic() - part.started))), False
    except subprocess.TimeoutExpired:
        rc, over = None, True
    finally:
        stop_group(part.proc)
    got = json.loads(part.result.read_text()) if part.result.exists() else {"figures": [], "notes": []}
    got["seconds"] = round(time.monotonic() - part.started, 1)
    if over:
        got["skipped"] = f"ran past its {part.box:.0f} s box and was stopped (what it measured before is kept; log: {part.log})"
    elif rc != 0:
        lines = part.log.read_text(errors="replace").splitlines()
        got["failed"] = f"exit code {rc}: {last_line(chr(10).join(lines))}"
        got["log_tail"] = lines[-15:]
    return got


def stop_group(proc: subprocess.Popen) -> None:
    """The part's process and whatever it started (loader workers, Ray, pytest): killed; the part is done either way."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def child_env(smoke: bool) -> dict:
    """The parts' environment: fgbg importable from this tree; in --smoke, no GPU for fgbg; offline."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    if smoke:
        env[CPU_ONLY_ENV] = "1"
    else:
        env.pop(CPU_ONLY_ENV, None)
    return env


def table(report: dict) -> str:
    """Every figure of every part, one per line: part, figure, value and unit, goal (and whether it is met)."""
    machine = {f["name"]: f["value"] for f in report["parts"].get("machine", {}).get("figures", [])}
    gpu, torch, cuda = (machine.get(k, "?") for k in ("GPU", "torch", "CUDA"))
    head = (f"fgbg GPU check{' (--smoke)' if report['smoke'] else ''}: {gpu}, torch {torch} (CUDA {cuda}), {report['date']},"
            f" {report.get('wall_s', 0) / 60:.1f} of {report['budget_s'] / 60:.1f} min")  # fmt: skip
    rows = [("part", "figure", "value", "goal")]
    for name, part in report["parts"].items():
        for f in part.get("figures", []):
            goal = f"{f['goal']}: {'yes' if f['met'] else 'NO'}" if f.get("goal") else ""
            rows.append((name, f["name"], f"{show(f['value'])} {f['unit']}".strip(), goal))
        for key in ("skipped", "failed"):
            if key in part:
                rows.append((name, key, part[key], ""))
    widths = [max(len(r[i]) for r in rows) if i < 3 else 0 for i in range(4)]
    widths = [min(w, 60) for w in widths]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    notes = [f"{name}: {n}" for name, part in report["parts"].items() for n in part.get("notes", [])]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))


def show(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheels", help="folder of wheels from benchmarks/gpu_wheels.sh, installed first (default: install nothing)")
    p.add_argument("--out", default="gpu-check.json", help="the JSON report, rewritten after every part (default gpu-check.json);"
                   " each part's output goes to OUT's name with -logs (gpu-check-logs/)")
    p.add_argument("--budget-minutes", type=float, default=8.0, help="wall-clock budget of the whole check (default 8)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, in this order (default all): {','.join(PARTS)}")
    p.add_argument("--box", action="append", default=[], metavar="PART=SECONDS", help="another time box for a part (repeatable)")
    p.add_argument("--learn-minutes", type=float, default=1.5, help="training budget of the learning part (default 1.5)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, in seconds: the check of this script")
    p.add_argument("--work", help="working folder, kept (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary working folder")
    p.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    p.add_argument("--settings", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.part:
        return args
    args.parts = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = [name for name in args.parts if name not in PARTS]
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    try:
        args.box = {name: float(seconds) for name, seconds in (item.split("=", 1) for item in args.box)}
    except ValueError:
        p.error("--box: expected PART=SECONDS, e.g. --box cuda_tests=300")
    if any(name not in PARTS for name in args.box):
        p.error(f"--box: unknown part; choose from {', '.join(PARTS)}")
    if args.wheels and not Path(args.wheels).is_dir():
        p.error(f"--wheels {args.wheels}: no such folder; fill one with benchmarks/gpu_wheels.sh DIR")
    if args.budget_minutes < 0 or args.learn_minutes <= 0:
        p.error("--budget-minutes must be 0 or more and --learn-minutes positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.part:
        try:
            return run_part(args.part, Path(args.settings))
        except Exception:  # noqa: BLE001 (the parent reports the part as failed with this output's last line)
            traceback.print_exc()
            return 1
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
