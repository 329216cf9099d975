"""Depth-network labelling speed: batch 1 vs batch 16, and per-bg vs per-sample mode.

    python benchmarks/bench_depth.py [--placements 4] [--size 224]

Uses a tiny random-weight ONNX depth model built here (no weights can be downloaded),
so the figures measure fgbg's machinery (batching, workers, scaling, encoding), not a
real network's FLOPs; with MiDaS or Depth Anything the network dominates and the
per-bg/per-sample ratio grows towards the ratio of network calls (placements x fgs x 2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.depth.testing import tiny_onnx_depth
from fgbg.make.generate import generate


def timed_generate(out: Path, config: GenerateConfig, workers: int) -> float:
    """Samples/s of a whole `generate` run."""
    t = time.perf_counter()
    summary = generate(*demo_assets(), out, config, workers=workers, progress=False)
    return summary.samples / (time.perf_counter() - t)


def network_ceiling(model: str, size: int, batch: int = 16, repeats: int = 5) -> dict[str, float]:
    """What batching can save at most: the estimator alone on one thread (as each of 2 workers runs it).

    Seconds per image of the whole estimator call (resize in, network, resize back) and of the
    network alone, at batch 1 and at ``batch``, and the fixed cost of one ONNX Runtime call
    (a 1 x 3 x 8 x 8 input): the only part a bigger batch shares out.
    """
    import numpy as np

    from fgbg.depth.estimator import OnnxEstimator, to_network_input

    est = OnnxEstimator(Path(model), threads=1)
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    x = to_network_input(images, est.preprocess)
    run = lambda a: est.session.run(None, {est.input_name: a})  # noqa: E731

    def per_image(fn, chunk: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for i in range(0, batch, chunk):
                fn(i, chunk)
            best = min(best, (time.perf_counter() - t) / batch)
        return best

    tiny = np.zeros((1, 3, 8, 8), np.float32)
    return {
        "call_1": per_image(lambda i, c: est(images[i : i + c]), 1),
        "call_n": per_image(lambda i, c: est(images[i : i + c]), batch),
        "net_1": per_image(lambda i, c: run(x[i : i + c]), 1),
        "net_n": per_image(lambda i, c: run(x[i : i + c]), batch),
        "overhead": per_image(lambda i, c: run(tiny), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--placements", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-depth-"))
    try:
        model = str(tiny_onnx_depth(tmp / "tiny_depth.onnx", width=16))
        base = dict(size=args.size, fg_size=args.size // 2, placements=args.placements, depth_model=model)
        runs = {
            "estimator, batch 1": GenerateConfig(**base, depth="estimator", depth_batch=1),
            "estimator, batch 16": GenerateConfig(**base, depth="estimator", depth_batch=16),
            "estimator-per-bg": GenerateConfig(**base, depth="estimator-per-bg"),
        }
        rates = {name: timed_generate(tmp / f"out{i}", c, args.workers) for i, (name, c) in enumerate(runs.items())}
        n = 10 * 17 * 2 * args.placements
        print(f"work: about {n} samples at {args.size} px from the demo assets, {args.workers} workers, tiny ONNX model")
        for name, rate in rates.items():
            print(f"{name:22s} {rate:8.0f} samples/s")
        print(f"batch 16 / batch 1: {rates['estimator, batch 16'] / rates['estimator, batch 1']:.2f}x")
        print(f"per-bg / per-sample (batch 16): {rates['estimator-per-bg'] / rates['estimator, batch 16']:.2f}x")
        c = network_ceiling(model, args.size)
        print(f"the estimator alone, one thread, ms per image: whole call {c['call_1'] * 1e3:.2f} (batch 1) vs"
              f" {c['call_n'] * 1e3:.2f} (batch 16) = {c['call_1'] / c['call_n']:.2f}x;"
              f" network only {c['net_1'] * 1e3:.2f} vs {c['net_n'] * 1e3:.2f} = {c['net_1'] / c['net_n']:.2f}x;"
              f" fixed cost of one ONNX Runtime call {c['overhead'] * 1e3:.3f} ms")
        print("batching can only share out the per-call cost; the per-image convolutions and resizes stay per image")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
