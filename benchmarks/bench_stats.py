"""Statistics throughput for the fg_bg kind beside the JPEG-decode limit, on this machine.

    python benchmarks/bench_stats.py [--placements 120] [--workers 2] [--store PATH]

Generates a store from the bundled demo assets (10 bgs x 17 fgs x 2 flips x placements,
224 px; the default 120 placements = 40,800 samples, a tenth of the 400k job), or uses
``--store``, then prints:
- fg_bg images/s of ``fgbg.inspect.stats.collect(kinds=["fg_bg"])`` on ``--workers`` processes,
  cache off (reading shards, decoding every JPEG, exact histograms, merging), including
  the worker start-up;
- the JPEG-decode limit measured in the same run: simplejpeg decode time per fg_bg image
  on one core (best of 3 passes over 500 real members), times the workers; and the ratio;
- decode-only images/s over the same shards on the same worker pool (the practical limit
  under the machine's current load);
- for reference, samples/s for all three sample kinds (fg_bg, mask, depth) and the time
  of a cached rerun.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from fgbg import codecs
from fgbg.inspect import stats
from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.make.generate import generate
from fgbg.engine.local import map_shards
from fgbg.store import StoreReader, iter_samples, read_dataset_json


def decode_seconds_per_image(store: Path, n: int = 500) -> float:
    """One core: simplejpeg decode of n fg_bg members of the store, best of 3 passes."""
    jpegs = []
    for _, m in iter_samples(store):
        jpegs.append(m["fg_bg.jpg"])
        if len(jpegs) == n:
            break
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for data in jpegs:
            codecs.decode_jpeg(data)
        best = min(best, (time.perf_counter() - t) / len(jpegs))
    return best


def decode_shard(task: tuple[str, int]) -> int:
    """Worker: decode every fg_bg JPEG of one shard, nothing else; returns the count."""
    store, index = Path(task[0]), task[1]
    n = 0
    for _, m in StoreReader(store).iter_shard(index, ("fg_bg.jpg",)):
        codecs.decode_jpeg(m["fg_bg.jpg"])
        n += 1
    return n


def timed(fn) -> tuple[object, float]:
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--placements", type=int, default=120)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--store", type=Path, default=None, help="use this store (or generate it here and keep it)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-stats-"))
    store = args.store or tmp / "store"
    try:
        if not (store / "dataset.json").exists():
            bg, fg = demo_assets()
            _, seconds = timed(lambda: generate(bg, fg, store, GenerateConfig(placements=args.placements),
                                                workers=args.workers, progress=False))  # fmt: skip
            print(f"generated {store} in {seconds:.1f} s")
        meta = read_dataset_json(store)
        n = meta["counts"]["samples"]
        size = meta["config"]["size"]
        w = args.workers

        fg_bg, seconds = timed(lambda: stats.collect(store, ["fg_bg"], workers=w, cache=False))
        assert fg_bg["fg_bg"].count == n
        rate = n / seconds
        decode = decode_seconds_per_image(store)
        limit = w / decode
        tasks = [(str(store), s["index"]) for s in meta["shards"]]
        decoded, decode_pool_seconds = timed(lambda: sum(map_shards(decode_shard, tasks, workers=w, progress=False)))
        assert decoded == n
        shutil.rmtree(store / stats.CACHE_DIR, ignore_errors=True)  # a cold run, which fills the cache
        _, all_seconds = timed(lambda: stats.collect(store, stats.SAMPLE_KINDS, workers=w, cache=True))
        _, cached_seconds = timed(lambda: stats.write_stats(store, workers=w))

        print(f"work: {n} fg_bg images ({size}x{size} JPEG, {meta['counts']['shards']} shards), {w} workers,"
              f" {os.cpu_count()} cores")
        print(f"stats fg_bg: {rate:.0f} images/s ({seconds:.1f} s; 400k would take {400_000 / rate / 60:.1f} min)")
        print(f"JPEG-decode limit: {decode * 1e3:.3f} ms/image on one core -> {limit:.0f} images/s on {w}")
        print(f"ratio to the decode limit: {rate / limit:.2f}")
        decode_rate = n / decode_pool_seconds
        print(f"decode only, same shards and pool, same run: {decode_rate:.0f} images/s"
              f" -> stats reach {rate / decode_rate:.2f} of it (the rest: histograms, reading, start-up)")
        print(f"all sample kinds (fg_bg + mask + depth): {n / all_seconds:.0f} samples/s ({all_seconds:.1f} s)")
        print(f"cached rerun (all kinds, assets re-read): {cached_seconds:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
