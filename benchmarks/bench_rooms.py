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

Part 2, generation samples/s with depth-aware paste against without it, on the same assets
(--paste-rooms rendered rooms as bgs x the 17 demo fgs x 2 flips x --placements, at --size px,
--perspective scale 0.5:1): goal >= 0.8. Two figures:

- ``render``: the renderer of one store (decoded assets, this process, one thread): every
  sample placed, composited and encoded, with occlusion (nearer room pixels hide the fg,
  placements below --min-visible redrawn) and with it switched off on the same bgs
  (``Renderer.occluding``): the cost of the paste itself, without I/O noise. Samples per CPU
  second of this process (the best of --repeat interleaved passes), which other work on a
  shared machine does not change, and samples/s of wall-clock time beside it.
- ``generate``: ``generate`` end to end with one worker per core, on the rooms (their sidecars
  make the paste depth-aware) and on the same JPEGs without sidecars (the ground-plane prior:
  no occlusion; placements differ, the work per sample is the same).
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
    from fgbg.config import GenerateConfig
    from fgbg.demo import demo_assets
    from fgbg.make.generate import generate
    from fgbg.store.plan import Plan
    from fgbg.make.render import Renderer
    from fgbg.rooms import render_rooms

    root = Path(tempfile.mkdtemp(prefix="bench-paste-"))
    try:
        rooms, prior = root / "rooms", root / "prior"
        render_rooms(rooms, args.paste_rooms, args.size, seed=7, progress=False, workers=0)
        prior.mkdir()
        for jpg in sorted(rooms.glob("*.jpg")):
            shutil.copy(jpg, prior / jpg.name)  # the same pictures, no sidecars: the ground-plane prior
        _, fg = demo_assets()
        config = GenerateConfig(size=args.size, placements=args.placements, perspective=True, scale_min=0.5, scale_max=1.0)
        workers = args.workers or len(os.sched_getaffinity(0))
        rates = {}
        for name, bg in (("rooms", rooms), ("prior", prior)):
            start = time.perf_counter()
            generate(bg, fg, root / name / "store", config, workers=workers, progress=False)
            rates[name] = count_samples(root / name / "store") / (time.perf_counter() - start)
        (on, off), (on_wall, off_wall) = renderer_rates(Renderer.from_store(root / "rooms" / "store"), Plan, args.repeat)
        n = count_samples(root / "rooms" / "store")
        hidden = occluded_share(root / "rooms" / "store")
        print(f"depth-aware paste at {args.size} px, {n} samples ({args.paste_rooms} rooms x 17 fgs x 2 flips x {args.placements}),"
              f" {hidden:.0%} of them partly hidden:")  # fmt: skip
        print(f"  render (1 thread, no I/O): with occlusion {on:7.1f} samples/CPU s, without (same bgs, switched off) {off:7.1f}:"
              f" ratio {on / off:.2f}   (wall clock: {on_wall:.1f} and {off_wall:.1f} samples/s, ratio {on_wall / off_wall:.2f})")  # fmt: skip
        print(f"  generate ({workers} workers, end to end): rooms {rates['rooms']:7.1f} samples/s, same JPEGs on the prior"
              f" {rates['prior']:7.1f}: ratio {rates['rooms'] / rates['prior']:.2f}")  # fmt: skip
        print("goal: ratio >= 0.8")
    finally:
        shutil.rmtree(root)


def renderer_rates(renderer, plan_type, repeat: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((samples per CPU second with occlusion, without it), (the same per wall-clock second)): the best
    of ``repeat`` interleaved passes over every sample of the store."""
    plan = plan_type.from_config(len(renderer.bg), len(renderer.fg), renderer.config)
    refs = [plan[i] for i in range(len(plan))]
    occluding = list(renderer.occluding)
    cpu, wall = {True: float("inf"), False: float("inf")}, {True: float("inf"), False: float("inf")}
    for _ in range(repeat):
        for on in (True, False):
            renderer.occluding = occluding if on else [False] * len(occluding)
            start, start_cpu = time.perf_counter(), time.process_time()
            renderer.render_batch(refs)
            cpu[on] = min(cpu[on], time.process_time() - start_cpu)
            wall[on] = min(wall[on], time.perf_counter() - start)
    n = len(refs)
    return (n / cpu[True], n / cpu[False]), (n / wall[True], n / wall[False])


def count_samples(store: Path) -> int:
    import json

    return json.loads((store / "dataset.json").read_text())["counts"]["samples"]


def occluded_share(store: Path) -> float:
    import json

    lines = (store / "manifest.jsonl").read_text().splitlines()
    return sum(json.loads(line).get("visible", 1.0) < 1 for line in lines) / len(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--count", type=int, default=600, help="rooms per EGL measurement")
    p.add_argument("--fallback-count", type=int, default=160, help="rooms per numpy measurement")
    p.add_argument("--renderers", default="egl,numpy")
    p.add_argument("--workers", type=int, default=None, help="worker processes of the end-to-end figures (default: one per core)")
    p.add_argument("--paste-rooms", type=int, default=10, help="rooms as bgs in part 2")
    p.add_argument("--placements", type=int, default=4, help="placements per (room, fg, flip) in part 2")
    p.add_argument("--repeat", type=int, default=3, help="passes of part 2's render figure (the best is kept)")
    p.add_argument("--only-paste", action="store_true", help="part 2 only")
    args = p.parse_args()
    cores = pin(args.cores)
    if args.only_paste:
        return bench_paste(args)
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
