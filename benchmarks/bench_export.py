"""COCO and YOLO exports of a 40k-sample, 4-object store: CPU ms and images/s, peak memory, JSON bytes per annotation.

    python benchmarks/bench_export.py [--placements 118] [--objects 4] [--size 224] [--workers 2] [--store DIR]
                                      [--to coco,yolo] [--runs 1]

Makes (or reuses, with --store) a store from the bundled demo assets with the foregrounds in
three category folders (animals, people, things): 10 bgs x 17 fgs x 2 flips x 118 placements
= 40,120 samples of 4 objects at 224 px. Then runs `fgbg export coco STORE` and
`fgbg export yolo STORE` as a user would (a fresh process each) and prints for each:
- CPU ms an image: user + sys of the whole command and its workers (``resource.getrusage`` of
  the children: start-up, workers, joining the COCO file, the final rename), the fair measure
  on a shared machine, and images/s of the wall clock, with the load average before and after;
- the floor that creating the files sets: a bare loop that writes as many files of the same
  sizes beside the export, its sys ms an image (a busy disk makes it vary several-fold);
- peak RSS: the sum over the export's processes (sampled every 20 ms; shared pages counted in
  each, so an upper bound) and the largest single process;
- COCO: the annotation files' bytes per annotation (two RLE masks, boxes and fractions each);
- with ``--profile``: where a YOLO export's CPU goes, over one export in this process (no
  workers), each stage's function on a CPU clock: decoding the instance ids, the json, OpenCV's
  contours, joining parts and holes, the rows' text, creating the files, and the rest.
Goals: >= 3,000 images/s for each format on 2 cores, peak RSS < 500 MB (issue 19); YOLO
<= 0.5 ms of CPU an image over a 6,000-image store (issue 25: ``--placements 18`` gives 6,120).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.make.generate import generate

CATEGORIES = {
    "animals": ["cow", "dog", "elephant", "giraffe", "horse", "llama", "penguin", "rooster", "white_bg_cat"],
    "people": ["man_dancing", "person_running", "person_standing", "person_walking", "woman_dancing"],
    "things": ["cactus", "potted_plant", "snowman"],
}
GOAL_RATE, GOAL_RSS_MB, GOAL_YOLO_CPU_MS = 3000, 500, 0.5
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
    """Run `fgbg export` in a fresh process: wall seconds, CPU seconds, peak RSS (sum, largest), its summary line, load averages."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"wall": wall, "cpu": user + system, "user": user, "sys": system, "rss_sum": peak_sum, "rss_one": peak_one,
            "summary": summary, "load": load, "load_after": os.getloadavg()[0]}  # fmt: skip


def file_floor(export: Path, scratch: Path) -> float:
    """Sys seconds of writing a copy of every file of ``export`` (same folders, names and sizes) into ``scratch``, no more."""
    files = [(scratch / p.relative_to(export), bytes(p.stat().st_size)) for p in export.rglob("*") if p.is_file()]
    for folder in {target.parent for target, _ in files}:
        folder.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for target, data in files:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime - before


def profile_yolo(store: Path, out: Path, n: int) -> None:
    """Print the CPU ms an image of each stage of one YOLO export run in this process: each stage's
    function wrapped by a CPU clock (a microsecond a call, where cProfile would inflate every Python call)."""
    import cv2

    import fgbg.exports.walk as walk
    import fgbg.masks as masks
    from fgbg.exports import export_store

    stages = [  # (owner, attribute, what it does); the outline is OpenCV's contours plus the joining
        (walk, "decode_ids", "decoding the instance ids (cv2.imdecode)"),
        (json, "loads", "reading the json (json.loads)"),
        (cv2, "findContours", "OpenCV's contours (cv2.findContours)"),
        (masks, "join_rings", "joining parts and holes (masks.join_rings)"),
        (walk.RowWriter, "row", "the rows' text (yolo.RowWriter.row)"),
        (walk, "write_file", "creating and writing the files (walk.write_file)"),
    ]
    spent = {what: 0.0 for _, _, what in stages}

    def clocked(what: str, function):
        def run(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[what] += time.process_time() - start

        return run

    with contextlib.ExitStack() as patches:
        for owner, name, what in stages:
            patches.enter_context(mock.patch.object(owner, name, clocked(what, getattr(owner, name))))
        start = time.process_time()
        export_store(store, out, "yolo", workers=0, progress=False)
        total = time.process_time() - start
    print(f"yolo in one process, by stage: {total / n * 1e3:.3f} CPU ms/image (no workers to start)")
    for what, seconds in spent.items():
        print(f"  {seconds / n * 1e3:.3f} ms  {what}")
    print(f"  {(total - sum(spent.values())) / n * 1e3:.3f} ms  the rest (reading the shards, start-up, the loop)")
    shutil.rmtree(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--placements", type=int, default=118, help="placements per (bg, fg, flip): 118 = 40,120 samples")
    ap.add_argument("--objects", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2, help="export (and generate) worker processes")
    ap.add_argument("--store", type=Path, default=None, help="make the store here, or reuse the one there (default: a temporary folder)")
    ap.add_argument("--to", default="coco,yolo", help="the formats to export, in order (default: coco,yolo)")
    ap.add_argument("--runs", type=int, default=1, help="exports of each format, one after the other")
    ap.add_argument("--profile", action="store_true", help="also profile a YOLO export in this process: CPU ms/image by stage")
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
        for to in [t for t in args.to.split(",") for _ in range(args.runs)]:
            out = tmp / f"export-{to}"
            r = timed_export(store, to, out, args.workers)
            objects = int(re.search(r"(\d+) (annotations|objects)", r["summary"]).group(1))
            rate, cpu_ms = n / r["wall"], r["cpu"] / n * 1e3
            ok = "meets" if rate >= GOAL_RATE and r["rss_sum"] / 2**20 < GOAL_RSS_MB else "misses"
            print(f"{to}: {cpu_ms:.3f} CPU ms/image ({r['user'] / n * 1e3:.3f} user + {r['sys'] / n * 1e3:.3f} sys;"
                  f" {r['cpu']:.1f} CPU s = {n / r['cpu'] * args.workers:,.0f} images/s on {args.workers} idle cores),"
                  f" {rate:,.0f} images/s wall ({r['wall']:.1f} s, load {r['load']:.1f} before, {r['load_after']:.1f} after),"
                  f" peak RSS {r['rss_sum'] / 2**20:.0f} MB all processes, {r['rss_one'] / 2**20:.0f} MB the largest;"
                  f" {objects} {'annotations' if to == 'coco' else 'label rows'}; {ok} the goal"
                  f" (>= {GOAL_RATE:,} images/s, < {GOAL_RSS_MB} MB)")  # fmt: skip
            floor = file_floor(out, tmp / "floor")
            yolo_goal = f"; goal <= {GOAL_YOLO_CPU_MS} CPU ms/image: {'met' if cpu_ms <= GOAL_YOLO_CPU_MS else 'missed'}" if to == "yolo" else ""
            print(f"{to}: creating its files alone costs {floor / n * 1e3:.3f} sys ms/image{yolo_goal}")
            if to == "coco":
                files = list((out / "annotations").glob("*.json"))
                size = sum(f.stat().st_size for f in files)
                print(f"coco: annotation files {size / 1e6:.1f} MB, {size / objects:,.0f} bytes per annotation")
            shutil.rmtree(out)
            shutil.rmtree(tmp / "floor")
        if args.profile:
            profile_yolo(store, tmp / "export-profiled", n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
