"""Generation throughput beside the codec limit, peak memory, and the Ray engine beside the local one.

    python benchmarks/bench_generate.py [--placements 120] [--workers 2] [--engine both|local|ray] [--repeat 1]
    python benchmarks/bench_generate.py --objects 4 [--placements 30] [--repeat 2] [--scale 0.5:1 --perspective]

Runs `fgbg generate` on the bundled demo assets (10 bgs x 17 fgs x 2 flips x placements;
the default 120 placements = 40,800 samples, a tenth of the 400k job, same per-sample
work) and prints, for the local engine:
- samples/s of the whole run (assets, workers, shards, manifest, dataset.json);
- the codec limit measured in the same process: the time to encode one fg_bg JPEG, one
  mask PNG and one depth PNG of real samples on one core, turned into samples/s for all
  workers; and the ratio of the two;
- peak RSS of the parent and of the largest worker;
and for ``--engine ray`` (the same job, on a local Ray instance with --workers CPUs, started
inside a private network namespace, ``unshare -rnpf``, so Ray binds loopback only):
- samples/s of the run, Ray's start-up beside it, and the ratio to the local engine (goal >= 0.8);
- whether the two stores are byte-identical (dataset.json holds every shard's sha256);
- the per-shard costs behind README's "scale on paper": worker seconds per shard and the
  driver's CPU seconds per shard.
With ``--objects N`` (or MIN:MAX), the local engine only: the same job with several objects per
composite against one object, interleaved in the same process, samples/s of each and their ratio
(goal: >= 0.5 of the single-object rate and >= 1,500 samples/s at 224 px on 2 cores), and the CPU
time of a sample (user + sys of the driver and its workers, over the samples): the ratio of those is
what the load of a shared machine changes least. ``--scale`` and ``--perspective`` are generate's.

    python benchmarks/bench_generate.py --variety [--placements 30] [--repeat 2]

With ``--variety`` (issue 27), the local engine only, 4 objects per composite at 224 px, in one run:
plain, and ``--rotate 30 --blend hard,gaussian,motion --light 0.2 --harmonize 0.5`` interleaved
(best of --repeat each), samples/s, CPU ms a sample and the ratio of the two (goal >= 0.7); then,
apart and on a tenth of the placements, ``--blend poisson`` (OpenCV's seamlessClone per object); and
``--size 640x480`` (plain, a tenth of the placements) as samples/s and MB/s written. A config or a
generate that refuses an option (e.g. a --size WxH that this checkout cannot make yet) is reported as
skipped with its one-line reason, and the rest still runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fgbg import codecs
from fgbg.config import GenerateConfig
from fgbg.demo import demo_assets
from fgbg.engine import map_shards
from fgbg.make import generate as generate_module
from fgbg.make.generate import generate
from fgbg.store import iter_samples

WARM_SECONDS = 3.0


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


def cpu_seconds() -> float:
    """User + sys CPU seconds of this process and of its children that have exited (the workers of a finished run)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed_generate(out: Path, config: GenerateConfig, workers: int, engine: str) -> dict:
    """Generate the demo job at ``out``: wall and CPU seconds (driver and local workers), the driver's CPU seconds per shard between the
    first and the last finished shard (the steady state: collecting results, recording shards,
    progress; Ray's threads in the driver included), samples, shards, and every shard's sha256."""
    bg, fg = demo_assets()
    marks = []  # driver CPU time as each finished shard is recorded

    def timed_record(*args, **kwargs):
        generate_module.write_record_unpatched(*args, **kwargs)
        marks.append(time.process_time())

    generate_module.write_record_unpatched = generate_module.write_record
    generate_module.write_record = timed_record
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        summary = generate(bg, fg, out, config, workers=workers, progress=False, engine=engine)
    finally:
        generate_module.write_record = generate_module.write_record_unpatched
    meta = json.loads((out / "dataset.json").read_text())
    return {
        "seconds": time.perf_counter() - wall,
        "cpu": cpu_seconds() - cpu,
        "driver_cpu_per_shard": (marks[-1] - marks[0]) / max(1, len(marks) - 1),
        "samples": summary.samples,
        "shards": summary.shards,
        "bytes": summary.bytes,
        "shard_sha256": [s["files"] for s in meta["shards"]],
    }


def import_renderer(_: int) -> None:
    """A warm-up task: what a worker imports before its first shard."""
    import fgbg.make.render  # noqa: F401


def ray_child(args: argparse.Namespace) -> None:
    """Inside the namespace: start a local Ray instance of --workers CPUs and its worker processes,
    then time the same job on it (the steady state a long job sees; the start-up is printed apart)."""
    import ray

    from fgbg.engine.ray_engine import connect

    started = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
    connect()
    list(map_shards(import_renderer, range(2 * args.workers), engine="ray", progress=False))
    startup = time.perf_counter() - started  # Ray and its worker processes up, fgbg imported in each
    time.sleep(WARM_SECONDS)  # Ray's per-node agents finish starting: on 2 cores they would slow the timed run
    result = timed_generate(args.out, GenerateConfig(placements=args.placements), args.workers, "ray")
    print("RESULT " + json.dumps({**result, "startup": startup}), flush=True)


def run_ray(args: argparse.Namespace, out: Path) -> dict:
    """``ray_child`` in a private network + pid namespace (loopback only; no Ray process outlives it)."""
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    cmd = ["unshare", "-rnpf", "--mount-proc", "sh", "-c", 'ip link set lo up && "$0" "$@"', sys.executable,
           __file__, "--ray-child", "--out", str(out), "--placements", str(args.placements), "--workers", str(args.workers)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_TMPDIR": ray_tmp})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"the Ray run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def print_local(out: Path, run: dict, workers: int) -> None:
    rate = run["samples"] / run["seconds"]
    codec = codec_seconds_per_sample(out)
    limit = workers / codec
    rss_parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"work: {run['samples']} samples ({run['samples'] / 400_000:.3f} of the 400k job), "
          f"{workers} workers, {os.cpu_count()} cores, {run['bytes'] / 1e6:.0f} MB")
    print(f"generate: {rate:.0f} samples/s ({run['seconds']:.1f} s; 400k would take {400_000 / rate / 60:.1f} min)")
    print(f"codec limit: {codec * 1e3:.3f} ms/sample on one core -> {limit:.0f} samples/s on {workers}")
    print(f"ratio to the codec limit: {rate / limit:.2f}")
    print(f"peak RSS: parent {rss_parent:.0f} MiB, largest worker {rss_child:.0f} MiB")


def print_costs(engine: str, run: dict, workers: int) -> None:
    """Per-shard costs: worker seconds (wall x slots / shards) and the driver's CPU seconds."""
    per_shard = run["seconds"] * workers / run["shards"]
    driver = run["driver_cpu_per_shard"]
    print(f"{engine} per shard ({run['samples'] // run['shards']} samples): {per_shard:.3f} worker-s "
          f"({per_shard / (run['samples'] / run['shards']) * 1e3:.2f} ms/sample), driver {driver * 1e3:.1f} ms CPU")


def compare_objects(args: argparse.Namespace, tmp: Path) -> None:
    """--objects: several objects per composite against one, the same job, interleaved; best of --repeat."""
    lo, _, hi = args.objects.partition(":")
    s_lo, _, s_hi = args.scale.partition(":")
    one = GenerateConfig(placements=args.placements, scale_min=float(s_lo), scale_max=float(s_hi or s_lo), perspective=args.perspective)
    several = dataclasses.replace(one, objects_min=int(lo), objects_max=int(hi or lo))
    flags = f"--scale {args.scale}" + (" --perspective" if args.perspective else "")
    best: dict[str, dict] = {}
    for attempt in range(args.repeat):
        for name, config in (("1 object", one), (f"{args.objects} objects", several)):
            run = timed_generate(tmp / f"{name.split()[0]}-{attempt}", config, args.workers, "local")
            best[name] = run if name not in best or run["seconds"] < best[name]["seconds"] else best[name]
    rates = {name: run["samples"] / run["seconds"] for name, run in best.items()}
    for name, rate in rates.items():
        run = best[name]
        print(f"{name}: {rate:.0f} samples/s, {run['cpu'] / run['samples'] * 1e3:.2f} ms CPU/sample ({run['samples']} samples,"
              f" {run['seconds']:.1f} s, {run['bytes'] / run['samples'] / 1e3:.1f} kB/sample, {args.workers} workers, {GenerateConfig().size} px, {flags})")
    one, many = rates.values()
    cpu_one, cpu_many = (run["cpu"] / run["samples"] for run in best.values())
    print(f"ratio: {many / one:.2f} of the single-object rate (goal >= 0.5); {many:.0f} samples/s (goal >= 1500);"
          f" CPU per sample {cpu_one / cpu_many:.2f}; load average {os.getloadavg()[0]:.2f}")


VARIETY_FLAGS = "--rotate 30 --blend hard,gaussian,motion --light 0.2 --harmonize 0.5"
VARIETY_GOAL = 0.7  # of the plain 4-object samples/s


def variety_configs(placements: int, objects: int = 4) -> dict[str, GenerateConfig]:
    """The configs of --variety's runs by their flags: plain, VARIETY_FLAGS, poisson (a tenth of the
    placements) and 640x480 (a tenth); a config that refuses (ConfigError) is left out, its reason
    kept in the returned dict's "skipped" entries as a str."""
    plain = GenerateConfig(placements=placements, objects_min=objects, objects_max=objects)
    fewer = max(1, placements // 10)
    wanted = {
        "plain": lambda: plain,
        VARIETY_FLAGS: lambda: dataclasses.replace(plain, rotate_min=-30.0, rotate_max=30.0, blend=("hard", "gaussian", "motion"), light=0.2, harmonize=0.5),
        "--blend poisson": lambda: dataclasses.replace(plain, placements=fewer, blend=("poisson",)),
        "--size 640x480": lambda: dataclasses.replace(plain, placements=fewer, size=640, height=480),
    }
    configs: dict = {}
    for name, make in wanted.items():
        try:
            configs[name] = make()
        except Exception as e:  # noqa: BLE001 -- the config's own refusal, reported as a skip
            configs[name] = f"{type(e).__name__}: {e}"
    return configs


def try_generate(out: Path, config: GenerateConfig, workers: int) -> dict | str:
    """timed_generate, or the one-line reason it failed (this checkout cannot make the config yet)."""
    try:
        return timed_generate(out, config, workers, "local")
    except Exception as e:  # noqa: BLE001 -- reported as a skip, the other runs go on
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def rate_line(name: str, run: dict, config: GenerateConfig) -> str:
    height, width = config.frame
    return (f"{name}: {run['samples'] / run['seconds']:.0f} samples/s, {run['bytes'] / 1e6 / run['seconds']:.1f} MB/s, {run['cpu'] / run['samples'] * 1e3:.2f} ms CPU/sample"
            f" ({run['samples']} samples, {run['seconds']:.1f} s, {run['bytes'] / run['samples'] / 1e3:.1f} kB/sample, {width}x{height} px, {config.objects_max} objects)")


def compare_variety(args: argparse.Namespace, tmp: Path) -> None:
    """--variety: plain and VARIETY_FLAGS interleaved (best of --repeat), then poisson and 640x480 apart."""
    configs = variety_configs(args.placements)
    tries: dict[str, list[dict | str]] = {"plain": [], VARIETY_FLAGS: []}
    for attempt in range(args.repeat):  # interleaved: a shared machine's load falls on both alike
        for name, runs in tries.items():
            out = tmp / f"{'plain' if name == 'plain' else 'variety'}-{attempt}"
            runs.append(configs[name] if isinstance(configs[name], str) else try_generate(out, configs[name], args.workers))
            shutil.rmtree(out, ignore_errors=True)
    best: dict[str, dict | str] = {}
    for name, runs in tries.items():
        done = [r for r in runs if isinstance(r, dict)]
        best[name] = min(done, key=lambda r: r["seconds"]) if done else runs[0]
    for name in ("--blend poisson", "--size 640x480"):
        best[name] = configs[name] if isinstance(configs[name], str) else try_generate(tmp / name.split()[-1], configs[name], args.workers)
    for name, run in best.items():
        print(f"{name}: skipped ({run})" if isinstance(run, str) else rate_line(name, run, configs[name]))
    plain, varied = best["plain"], best[VARIETY_FLAGS]
    if isinstance(plain, dict) and isinstance(varied, dict):
        ratio = (varied["samples"] / varied["seconds"]) / (plain["samples"] / plain["seconds"])
        cpu = (plain["cpu"] / plain["samples"]) / (varied["cpu"] / varied["samples"])
        print(f"ratio: {ratio:.2f} of the plain 4-object samples/s (goal >= {VARIETY_GOAL}: {'yes' if ratio >= VARIETY_GOAL else 'NO'});"
              f" CPU per sample {cpu:.2f}; best of {args.repeat}; {args.workers} workers, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--placements", type=int, default=None, help="placements per (bg, fg, flip) (default 120; 30 with --objects)")
    parser.add_argument("--objects", default=None, metavar="N|MIN:MAX", help="compare several objects per composite with one (local engine)")
    parser.add_argument("--variety", action="store_true", help="issue 27's speed figures at 4 objects: plain, the variety flags, poisson, 640x480")
    parser.add_argument("--scale", default="1", metavar="S|MIN:MAX", help="fg scale, as generate's --scale (--objects)")
    parser.add_argument("--perspective", action="store_true", help="as generate's --perspective (--objects)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--engine", choices=["both", "local", "ray"], default="both")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each engine, interleaved; the best is reported")
    parser.add_argument("--keep", type=Path, default=None, help="write the local store here and keep it")
    parser.add_argument("--ray-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.placements is None:
        args.placements = 30 if args.objects or args.variety else 120
    if args.ray_child:
        ray_child(args)
        return
    if args.objects or args.variety:
        tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-"))
        try:
            (compare_variety if args.variety else compare_objects)(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return

    config = GenerateConfig(placements=args.placements)
    tmp = Path(tempfile.mkdtemp(prefix="fgbg-bench-"))
    try:
        local = ray = None
        for attempt in range(args.repeat):  # interleaved, best of each: the machine may be shared
            if args.engine in ("both", "local"):
                out = args.keep if args.keep and attempt == 0 else tmp / f"local-{attempt}"
                run = timed_generate(out, config, args.workers, "local")
                local = run if local is None or run["seconds"] < local["seconds"] else local
                if attempt == 0:
                    print_local(out, run, args.workers)
            if args.engine in ("both", "ray"):
                run = run_ray(args, tmp / f"ray-{attempt}")
                ray = run if ray is None or run["seconds"] < ray["seconds"] else ray
        best = f" (best of {args.repeat})" if args.repeat > 1 else ""
        if local:
            print(f"local: {local['samples'] / local['seconds']:.0f} samples/s{best}")
            print_costs("local", local, args.workers)
        if ray:
            print(f"ray: {ray['samples'] / ray['seconds']:.0f} samples/s{best} ({ray['seconds']:.1f} s on a local Ray"
                  f" instance of {args.workers} CPUs; {ray['startup']:.1f} s more to start Ray and its workers)")
            print_costs("ray", ray, args.workers)
        if local and ray:
            same = "yes" if local["shard_sha256"] == ray["shard_sha256"] else "NO"
            print(f"ray / local throughput: {local['seconds'] / ray['seconds']:.2f} (goal >= 0.8);"
                  f" byte-identical shards: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
