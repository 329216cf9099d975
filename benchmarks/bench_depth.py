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
from fgbg.generate import generate


def timed_generate(out: Path, config: GenerateConfig, workers: int) -> float:
    """Samples/s of a whole `generate` run."""
    t = time.perf_counter()
    summary = generate(*demo_assets(), out, config, workers=workers, progress=False)
    return summary.samples / (time.perf_counter() - t)


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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
