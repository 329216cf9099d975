"""Rendered rooms (issue 14): rooms per second, EGL and the numpy fallback; then generation speed
with depth-aware paste against without it.

    python benchmarks/bench_rooms.py                      # 224 px, 2 cores, both renderers
    python benchmarks/bench_rooms.py --cores 16 --count 2000

Part 1, rooms/s at --size px on --cores cores (this process and Mesa's llvmpipe threads are
pinned to them), two figures per renderer:

- ``render``: sample the scene description and render it to arrays (RGB, metric depth), in
  this process (llvmpipe with one thread per core): the renderer's own speed.
- ``write``: ``render_rooms`` end to end into a new folder: render, JPEG + 16-bit PNG,
  atomic durable writes (fsync), one worker process per core, each with its own EGL context
  and one llvmpipe thread: what ``fgbg rooms`` does (worker start-up included).

CPU ms per room (all threads of the process and of its workers) is printed too: on a shared
machine wall-clock rates drop with the load, while CPU time per room does not, and
1000 * cores / (CPU ms) bounds the rate on idle cores.

The numpy figures use fewer rooms (--fallback-count): it is 5-10x slower.
Goal (issue 14): >= 300 rooms/s with EGL at 224 px on 2 cores.

Part 2, generation samples/s with depth-aware paste against without it (goal >= 0.8), comes
with the depth-aware paste (issue 14, item 3): see ``bench_paste`` below.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def pin(cores: int) -> list[int]:
    """Pin this process (and the threads and processes it starts) to ``cores`` cores."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, allowed)
    return allowed


def render_rate(kind: str, size: int, count: int, seed: int = 0) -> tuple[float, float, str]:
    """(rooms/s of sampling + rendering to arrays, CPU ms per room of this process's threads, the
    renderer's description), after 3 warm-up rooms."""
    from fgbg.rooms.scene import sample_scene
    from fgbg.rooms.textures import texture_bank
    from fgbg.rooms.write import make_renderer

    bank = texture_bank(seed)
    os.environ["LP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))  # llvmpipe's threads: one per pinned core
    renderer = make_renderer(kind, size, bank.layers)
    del os.environ["LP_NUM_THREADS"]  # the workers of write_rate get theirs from render_rooms
    try:
        for i in range(3):
            renderer.render(sample_scene(seed, i, bank.picker))
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            renderer.render(sample_scene(seed, i, bank.picker))
        return count / (time.perf_counter() - start), (time.process_time() - cpu) / count * 1e3, renderer.detail
    finally:
        renderer.close()


def write_rate(kind: str, size: int, count: int, workers: int) -> tuple[float, float]:
    """(rooms/s, CPU ms per room of this process and its workers) of ``render_rooms`` into a fresh
    folder, ``workers`` processes (their start, the EGL contexts and the texture bank included)."""
    from fgbg.rooms.write import render_rooms

    folder = Path(tempfile.mkdtemp(prefix="bench-rooms-"))
    try:
        start, cpu = time.perf_counter(), _cpu_seconds()
        render_rooms(folder / "rooms", count, size, renderer=kind, progress=False, workers=workers)
        return count / (time.perf_counter() - start), (_cpu_seconds() - cpu) / count * 1e3
    finally:
        shutil.rmtree(folder)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_paste(args: argparse.Namespace) -> None:
    """Part 2 (issue 14, item 3): generate on rendered rooms with depth-aware paste and without it,
    same assets and config; print both samples/s and their ratio (goal >= 0.8)."""
    print("part 2 (generation with depth-aware paste / without): not measured yet; comes with the depth-aware paste")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--count", type=int, default=600, help="rooms per EGL measurement")
    p.add_argument("--fallback-count", type=int, default=160, help="rooms per numpy measurement")
    p.add_argument("--renderers", default="egl,numpy")
    p.add_argument("--workers", type=int, default=None, help="worker processes of the end-to-end figure (default: one per core)")
    args = p.parse_args()
    cores = pin(args.cores)
    load = os.getloadavg()[0]
    print(f"rooms at {args.size} px on {len(cores)} cores {cores} (load average {load:.1f}: other work on these cores slows every figure)")
    for kind in args.renderers.split(","):
        count = args.count if kind == "egl" else args.fallback_count
        try:
            rate, cpu, detail = render_rate(kind, args.size, count)
        except Exception as e:  # noqa: BLE001 (no EGL here: say so, go on with the fallback)
            print(f"  {kind:5s}: cannot run here: {e}")
            continue
        written, write_cpu = write_rate(kind, args.size, count, workers=args.workers or len(cores))
        print(f"  {kind:5s}: render {rate:7.1f} rooms/s ({cpu:.2f} CPU ms/room), write (fgbg rooms end to end) {written:7.1f} rooms/s"
              f" ({write_cpu:.2f} CPU ms/room)  [{count} rooms, {detail}]")  # fmt: skip
    print(f"CPU ms/room: every thread of this process (and, end to end, of its workers); on {len(cores)} otherwise idle cores,"
          f" rooms/s is at most {len(cores)} * 1000 / it")  # fmt: skip
    print("goal: >= 300 rooms/s with EGL at 224 px on 2 cores")
    bench_paste(args)


if __name__ == "__main__":
    main()
