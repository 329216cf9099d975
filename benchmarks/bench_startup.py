"""Launch to first training step on a 400k-sample store, the index's memory, and verify/stats times.

    python benchmarks/bench_startup.py [--placements 1200] [--size 32] [--workers 2] [--store PATH]
                                       [--no-old] [--no-verify] [--no-stats]

Generates a store from the bundled demo assets (10 bgs x 17 fgs x 2 flips x placements; the
default 1200 placements = 408,000 samples in 408 shards, the user's 406,080 in 407; at 32 px,
so it fits this machine's disk and minutes: the index and start-up costs depend on the
sample and member counts, not on the pixels), or uses ``--store``, then prints:

- launch to first training step: a fresh ``python`` process running ``fgbg.learn.train.train``
  (``fgbg train STORE --out RUN --epochs 1``, defaults otherwise) with a callback that stamps
  the first batch (wall time since the parent started the process, imports included), with
  the time of each log line before it and the process's peak RSS;
- the data path alone, in this process: the split, the train and val data sets, the loader
  and its first batch of 32 (what of the start-up depends on the store);
- the index: building a :class:`fgbg.store.read.StoreReader` and loading every shard's
  member index, its time and the bytes it holds (tracemalloc), per sample;
- the old path, measured here for reference (what fgbg before the one reader did at training
  start-up: 5 parses of manifest.jsonl and 3 tarfile walks over every shard header): one
  parse and one walk timed, their memory per sample (tracemalloc over 20 shards), and the
  start-up they add up to;
- ``fgbg verify`` and ``fgbg stats`` wall times on ``--workers``.

Figures are with a warm page cache (the store was just written or read).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

CHILD = "--child-train"


def child_train(store: Path, out: Path, launched: float, report: Path) -> None:
    """In a fresh process: train until the first batch starts, then write the timings and exit."""
    lines = [("imports", 0.0)]
    from fgbg.cli import own_the_process

    own_the_process()  # as `fgbg train` does before its imports (fgbg.learn.lean_imports)
    from fgbg.learn.train import TrainConfig, train
    from lightning.pytorch.callbacks import Callback

    lines[0] = ("imports done", time.time() - launched)

    class FirstStep(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            import resource

            first = time.time() - launched
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            heavy = [m for m in ("transformers", "scipy", "torch._dynamo", "tensorboard", "tensorboardX") if m in sys.modules]
            report.write_text(json.dumps({"first_step": first, "lines": lines, "peak_rss_mib": rss, "imported": heavy}))
            os._exit(0)  # the figure is taken; no need to train an epoch of 326k samples

    def log(line: str) -> None:
        lines.append((line[:90], time.time() - launched))

    train(store, out, TrainConfig(epochs=1), progress=False, log=log, callbacks=[FirstStep()])


def launch_to_first_step(store: Path, tmp: Path) -> dict:
    report = tmp / "first_step.json"
    launched = time.time()
    subprocess.run([sys.executable, __file__, CHILD, str(store), str(tmp / "run"), str(launched), str(report)], check=True)
    return json.loads(report.read_text())


def data_path_to_first_batch(store: Path) -> float:
    """Seconds for what train() does with the store before its first step: split, data sets, loader, one batch."""
    from fgbg.learn.data import AugmentConfig, StoreDataset, load_stats, make_loader, read_entries, split_indices

    started = time.perf_counter()
    split = split_indices(read_entries(store), "bg", 0.2, 0)
    stats = load_stats(store)
    train_set = StoreDataset(store, split.train, 96, stats, AugmentConfig(), 0)
    StoreDataset(store, split.val, 96, stats)
    next(iter(make_loader(train_set, 32, True, 0, 0, drop_last=True)))
    return time.perf_counter() - started


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def held_bytes(fn) -> tuple[object, int]:
    """(fn(), bytes it allocated and still holds), by tracemalloc."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = fn()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return result, after - before


# ---------------------------------------------------------------- the old path, for reference


def old_manifest_entries(store: Path) -> list[tuple[str, int, int]]:
    """What the old read_entries did: parse every line of manifest.jsonl."""
    out = []
    for line in (store / "manifest.jsonl").read_text().splitlines():
        m = json.loads(line)
        out.append((m["key"], int(m["bg"]), int(m["fg"])))
    return out


def old_tar_index(store: Path, shards: list[dict]) -> dict:
    """What the old SampleReader did per dataset: walk every tar header with tarfile."""
    index = {}
    for shard in shards:
        rel = next(iter(shard["files"]))
        with tarfile.open(store / rel) as tar:
            for info in tar:
                key, suffix = info.name.split(".", 1)
                index.setdefault(key, {})[suffix] = (info.offset_data, info.size)
    return index


def main() -> None:
    if sys.argv[1:2] == [CHILD]:
        store, out, launched, report = sys.argv[2:6]
        child_train(Path(store), Path(out), float(launched), Path(report))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--placements", type=int, default=1200)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--store", type=Path, default=None, help="use this store (or generate it there and keep it)")
    parser.add_argument("--no-old", action="store_true", help="skip the old path's reference figures")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--no-stats", action="store_true")
    args = parser.parse_args()

    from fgbg.config import GenerateConfig
    from fgbg.demo import demo_assets
    from fgbg.inspect import stats
    from fgbg.inspect.verify import verify
    from fgbg.make.generate import generate
    from fgbg.store import StoreReader, read_dataset_json

    tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-startup-"))
    store = args.store or tmp / "store"
    try:
        if not (store / "dataset.json").exists():
            bg, fg = demo_assets()
            config = GenerateConfig(size=args.size, fg_size=args.size // 2, placements=args.placements)
            _, seconds = timed(lambda: generate(bg, fg, store, config, workers=args.workers, progress=False))
            print(f"generated {store} in {seconds:.0f} s")
        meta = read_dataset_json(store)
        n, n_shards = meta["counts"]["samples"], meta["counts"]["shards"]
        print(f"store: {n} samples in {n_shards} shards, {meta['config']['size']} px, {meta['total_bytes'] / 1e9:.2f} GB;"
              f" {os.cpu_count()} cores")  # fmt: skip

        first = launch_to_first_step(store, tmp)
        print(f"launch to first training step: {first['first_step']:.2f} s (peak RSS {first['peak_rss_mib']:.0f} MiB;"
              f" imported of the heavy optional ones: {', '.join(first['imported']) or 'none'})")
        for line, at in first["lines"]:
            print(f"  {at:6.2f} s  {line}")

        print(f"data path alone (split, data sets, loader, first batch of 32): {data_path_to_first_batch(store):.2f} s")

        def load_index():
            reader = StoreReader(store)
            for j in range(len(reader.shards)):
                reader.table(j)
            return reader

        _, index_seconds = timed(load_index)
        _, index_bytes = held_bytes(load_index)
        print(f"index: {index_seconds:.2f} s to read, {index_bytes / 1e6:.1f} MB held"
              f" ({index_bytes / n:.0f} bytes/sample; 400k: {index_bytes / n * 400_000 / 1e6:.0f} MB)")  # fmt: skip

        if not args.no_old:
            entries, parse_seconds = timed(lambda: old_manifest_entries(store))
            assert len(entries) == n
            del entries
            _, walk_seconds = timed(lambda: old_tar_index(store, meta["shards"]))
            some = meta["shards"][:20]
            _, walk_bytes = held_bytes(lambda: old_tar_index(store, some))
            _, parse_bytes = held_bytes(lambda: old_manifest_entries(store))
            per_walk = walk_bytes / sum(s["count"] for s in some)
            old = 5 * parse_seconds + 3 * walk_seconds
            print(f"old path, for reference: manifest parse {parse_seconds:.1f} s ({parse_bytes / n:.0f} bytes/sample),"
                  f" tarfile header walk {walk_seconds:.1f} s ({per_walk:.0f} bytes/sample, {per_walk * n / 1e6:.0f} MB);"
                  f" 5 parses + 3 walks = {old:.0f} s before the first step")  # fmt: skip

        if not args.no_verify:
            report, seconds = timed(lambda: verify(store, workers=args.workers))
            print(f"verify: {seconds:.0f} s on {args.workers} workers ({n / seconds:.0f} samples/s; ok={report.ok})")
        if not args.no_stats:
            _, seconds = timed(lambda: stats.compute_stats(store, workers=args.workers, cache=False))
            print(f"stats: {seconds:.0f} s on {args.workers} workers ({n / seconds:.0f} samples/s, every kind, no cache)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
