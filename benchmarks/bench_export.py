"""COCO and YOLO exports of a 40k-sample, 4-object store: images/s, peak memory, JSON bytes per annotation.

    python benchmarks/bench_export.py [--placements 118] [--objects 4] [--size 224] [--workers 2] [--store DIR]

Makes (or reuses, with --store) a store from the bundled demo assets with the foregrounds in
three category folders (animals, people, things): 10 bgs x 17 fgs x 2 flips x 118 placements
= 40,120 samples of 4 objects at 224 px. Then runs `fgbg export coco STORE` and
`fgbg export yolo STORE` as a user would (a fresh process each) and prints for each:
- images/s of the whole run (start-up, workers, joining the COCO file, the final rename), and
  the CPU seconds it took (user and sys of every process; sys is mostly creating the files),
  with the load average before it: on a shared machine the wall-clock rate is what was left
  over, and CPU seconds / cores the rate on idle cores;
- peak RSS: the sum over the export's processes (sampled every 20 ms; shared pages counted in
  each, so an upper bound) and the largest single process;
- COCO: the annotation files' bytes per annotation (two RLE masks, boxes and fractions each).
Goals (issue 19): >= 3,000 images/s for each format on 2 cores, peak RSS < 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.make.generate import generate

CATEGORIES = {
    "animals": ["cow", "dog", "elephant", "giraffe", "horse", "llama", "penguin", "rooster", "white_bg_cat"],
    "people": ["man_dancing", "person_running", "person_standing", "person_walking", "woman_dancing"],
    "things": ["cactus", "potted_plant", "snowman"],
}
GOAL_RATE, GOAL_RSS_MB = 3000, 500
SAMPLE_SECONDS = 0.02


def category_folders(root: Path) -> Path:
    """ROOT/fg/{animals,people,things}/ with links to the demo foregrounds."""
    _, fg_src = demo_assets()
    files = {p.stem: p for p in fg_src.iterdir()}
    for name, stems in CATEGORIES.items():
        (root / "fg" / name).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            link = root / "fg" / name / files[stem].name
            if not link.exists():
                link.symlink_to(files[stem])
    return root / "fg"


def make_store(store: Path, inputs: Path, placements: int, objects: int, size: int, workers: int) -> float:
    """Generate the store unless one is complete there already; returns the seconds spent (0 if reused)."""
    if (store / "dataset.json").exists():
        return 0.0
    bg, _ = demo_assets()
    fg = category_folders(inputs)
    config = GenerateConfig(placements=placements, objects_min=objects, objects_max=objects, size=size)
    t = time.perf_counter()
    generate(bg, fg, store, config, workers=workers, progress=False)
    return time.perf_counter() - t


def tree_rss(pid: int) -> tuple[int, int]:
    """(sum, max) RSS in bytes over a process and its descendants, from /proc (Linux)."""
    sizes, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            sizes.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):  # gone meanwhile, or a zombie without VmRSS
            pass
    return sum(sizes), max(sizes, default=0)


def timed_export(store: Path, to: str, out: Path, workers: int) -> dict:
    """Run `fgbg export` in a fresh process: wall seconds, CPU seconds, peak RSS (sum, largest), its summary line."""
    before = os.times()
    load = os.getloadavg()[0]
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "fgbg", "export", to, str(store), "--out", str(out), "--workers", str(workers), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        total, largest = tree_rss(proc.pid)
        peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
        time.sleep(SAMPLE_SECONDS)
    wall = time.perf_counter() - t
    summary = proc.stdout.read().strip()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode})")
    after = os.times()
    user, system = after.children_user - before.children_user, after.children_system - before.children_system
    return {"wall": wall, "cpu": user + system, "user": user, "sys": system, "rss_sum": peak_sum, "rss_one": peak_one, "summary": summary, "load": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--placements", type=int, default=118, help="placements per (bg, fg, flip): 118 = 40,120 samples")
    ap.add_argument("--objects", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2, help="export (and generate) worker processes")
    ap.add_argument("--store", type=Path, default=None, help="make the store here, or reuse the one there (default: a temporary folder)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    store = args.store or tmp / "store"
    try:
        made = make_store(store, tmp / "inputs", args.placements, args.objects, args.size, args.workers)
        meta = json.loads((store / "dataset.json").read_text())
        n = sum(s["count"] for s in meta["shards"])
        made_text = f"made in {made:.0f} s" if made else "reused"
        print(f"store: {n} samples, {meta['config']['objects_max']} objects, {meta['config']['size']} px, {meta['format']}"
              f" ({made_text}); exports with --workers {args.workers} on {os.cpu_count()} CPUs")  # fmt: skip
        for to in ("coco", "yolo"):
            out = tmp / f"export-{to}"
            r = timed_export(store, to, out, args.workers)
            objects = int(re.search(r"(\d+) (annotations|objects)", r["summary"]).group(1))
            rate, cpu_rate = n / r["wall"], n / r["cpu"] * args.workers
            ok = "meets" if rate >= GOAL_RATE and r["rss_sum"] / 2**20 < GOAL_RSS_MB else "misses"
            print(f"{to}: {rate:,.0f} images/s ({r['wall']:.1f} s wall, load {r['load']:.1f} before;"
                  f" {r['cpu']:.1f} CPU s ({r['user']:.1f} user, {r['sys']:.1f} sys) = {cpu_rate:,.0f} images/s on {args.workers} idle cores),"
                  f" peak RSS {r['rss_sum'] / 2**20:.0f} MB all processes, {r['rss_one'] / 2**20:.0f} MB the largest;"
                  f" {objects} {'annotations' if to == 'coco' else 'label rows'}; {ok} the goal"
                  f" (>= {GOAL_RATE:,} images/s, < {GOAL_RSS_MB} MB)")  # fmt: skip
            if to == "coco":
                files = list((out / "annotations").glob("*.json"))
                size = sum(f.stat().st_size for f in files)
                print(f"coco: annotation files {size / 1e6:.1f} MB, {size / objects:,.0f} bytes per annotation")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
