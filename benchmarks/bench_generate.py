"""Generation throughput beside the codec limit, and peak memory.

    python benchmarks/bench_generate.py [--placements 120] [--workers 2]

Runs `fgbg generate` on the bundled demo assets (10 bgs x 17 fgs x 2 flips x placements;
the default 120 placements = 40,800 samples, a tenth of the 400k job, same per-sample
work) and prints:
- samples/s of the whole run (assets, workers, shards, manifest, dataset.json);
- the codec limit measured in the same process: the time to encode one fg_bg JPEG, one
  mask PNG and one depth PNG of real samples on one core, turned into samples/s for all
  workers; and the ratio of the two;
- peak RSS of the parent and of the largest worker.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.make.generate import generate
from fgbg.store import iter_samples


def codec_seconds_per_sample(store: Path, n: int = 400) -> float:
    """One core: encode fg_bg JPEG + mask PNG + depth PNG for n real samples of the store."""
    decoded = []
    for i, (_, m) in enumerate(iter_samples(store)):
        if i == n:
            break
        decoded.append((codecs.decode_jpeg(m["fg_bg.jpg"]), codecs.decode_png(m["mask.png"]), codecs.decode_png(m["depth.png"])))
    quality = GenerateConfig().jpeg_quality
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for fg_bg, mask, depth in decoded:
            codecs.encode_jpeg(fg_bg, quality)
            codecs.encode_png_gray(mask)
            codecs.encode_png_gray(depth)
        best = min(best, (time.perf_counter() - t) / len(decoded))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--placements", type=int, default=120)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--keep", type=Path, default=None, help="write the store here and keep it")
    args = parser.parse_args()

    bg, fg = demo_assets()
    config = GenerateConfig(placements=args.placements)
    tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-"))
    out = args.keep or tmp / "store"
    try:
        t = time.perf_counter()
        summary = generate(bg, fg, out, config, workers=args.workers, progress=False)
        seconds = time.perf_counter() - t
        rate = summary.samples / seconds
        codec = codec_seconds_per_sample(out)
        limit = args.workers / codec
        rss_parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"work: {summary.samples} samples ({summary.samples / 400_000:.3f} of the 400k job), "
              f"{args.workers} workers, {os.cpu_count()} cores, {summary.bytes / 1e6:.0f} MB")
        print(f"generate: {rate:.0f} samples/s ({seconds:.1f} s; 400k would take {400_000 / rate / 60:.1f} min)")
        print(f"codec limit: {codec * 1e3:.3f} ms/sample on one core -> {limit:.0f} samples/s on {args.workers}")
        print(f"ratio to the codec limit: {rate / limit:.2f}")
        print(f"peak RSS: parent {rss_parent:.0f} MiB, largest worker {rss_child:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
