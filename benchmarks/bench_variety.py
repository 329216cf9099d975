"""Does ``--variety`` teach fgbg's model what objects look like rather than how fgbg pastes them? (issue 27's proof)

    python benchmarks/bench_variety.py [--minutes 8] [--out /tmp/bench-variety]   # the figures (about 12 min)
    python benchmarks/bench_variety.py --epochs 3 [--threads 2]                     # a fixed schedule instead of a budget
    python benchmarks/bench_variety.py --minutes 0.5 --placements 2 --count 20     # a smoke run (about 2 min)

1. Split the demo assets by name: the last HELD_OUT_BGS backgrounds and the last HELD_OUT_FGS PNG
   cut-outs are held out (PNG only: the independent compositor reads RGBA PNGs, so both test sets
   hold the same objects); the network never sees them.
2. Two training stores of the rest with the same counts, made as a user would:
   ``fgbg generate --size 96 --fg-size 48 --placements P`` and the same with ``--variety``.
3. Train fgbg's model on each (``fgbg train``, batch 16, 5% random validation). Both runs start
   together, each with half the cores (``--threads``), so whatever else loads the machine slows
   both alike; with ``--minutes`` each run's schedule is sized to that budget, with ``--epochs``
   both run the same number of steps. Steps and wall time of each are printed.
4. Score both on held-out composites made two ways:
   - fgbg plain: ``fgbg generate`` of the held-out bgs x held-out fgs (``fgbg evaluate``'s metrics,
     depth included);
   - benchmarks/independent_compositor.py (code that shares nothing with fgbg/make) in each of its
     modes, hard, feathered, relit and feathered+relit+rotated: mask IoU per image, averaged, with
     the checkpoint's differencing baseline beside it.
5. Print a table and the issue's goals, and write everything to OUT/bench_variety.json:
   - variety beats plain by >= 3 points of mask IoU on the independent feathered+relit+rotated
     composites (the mean over the four modes is printed beside it);
   - variety loses <= 0.5 points against plain on fgbg's plain composites;
   - variety's own IoU differs by <= 1 point between fgbg's plain and the independent
     feathered+relit+rotated composites.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_compositor as compositor  # noqa: E402
from bench_train import copied  # noqa: E402

from fgbg.config import GenerateConfig  # noqa: E402
from fgbg.demo import demo_assets  # noqa: E402
from fgbg.learn.evaluate import evaluate  # noqa: E402
from fgbg.learn.metrics import baseline_mask, binarize, mask_iou  # noqa: E402
from fgbg.learn.model import inference_net  # noqa: E402
from fgbg.make.assets import IMAGE_SUFFIXES  # noqa: E402
from fgbg.make.generate import generate  # noqa: E402

HELD_OUT_BGS, HELD_OUT_FGS = 3, 4
MODELS = ("plain", "variety")
HARDEST = "feathered+relit+rotated"
GOAL_GAIN, GOAL_LOSS, GOAL_GAP = 0.03, 0.005, 0.01  # mask IoU, as fractions (3, 0.5 and 1 points)
EPS = 1e-9  # the bounds are inclusive: a difference of IoUs that is the bound up to float rounding meets it
SCORE_BATCH = 64
VARIETY_DRAWS = ("rotate", "blend", "light", "harmonize")


def split_assets(bg_dir: Path, fg_dir: Path, held_bgs: int, held_fgs: int) -> dict[str, list[Path]]:
    """Deterministic split by name: {"bg", "fg", "held_bg", "held_fg"} -> files; the held-out fgs are the last PNGs."""
    bgs = sorted(f for f in bg_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.endswith(".depth.png"))
    fgs = sorted(f for f in fg_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    held_fg = [f for f in fgs if f.suffix.lower() == ".png"][-held_fgs:]
    return {"bg": bgs[:-held_bgs], "held_bg": bgs[-held_bgs:], "fg": [f for f in fgs if f not in held_fg], "held_fg": held_fg}


def fgbg_cli(*args: str) -> list[str]:
    """The command line of ``fgbg ARGS`` run by this interpreter (so PYTHONPATH's fgbg is the one run)."""
    return [sys.executable, "-m", "fgbg", *args]


def make_training_store(bg: Path, fg: Path, out: Path, size: int, placements: int, variety: bool) -> dict:
    """``fgbg generate`` (with ``--variety`` or not) into ``out``: the store's dataset.json config."""
    if out.exists():
        shutil.rmtree(out)
    flags = ["--size", str(size), "--fg-size", str(size // 2), "--placements", str(placements), "--quiet"] + (["--variety"] if variety else [])
    subprocess.run(fgbg_cli("generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), *flags), check=True)
    return json.loads((out / "dataset.json").read_text())["config"]


def recorded_draws(store: Path) -> dict[str, int]:
    """{draw: samples whose manifest entry records it} for the variety draws (rotate, blend, light, harmonize):
    none in a plain store, and none in a --variety store of a generate that does not draw them yet."""
    found: dict[str, int] = {}
    with open(store / "manifest.jsonl") as lines:
        for line in lines:
            entry = json.loads(line)
            for key in VARIETY_DRAWS:
                if key in entry or any(key in o for o in entry.get("objects", [])):
                    found[key] = found.get(key, 0) + 1
    return found


def train_together(stores: dict[str, Path], runs: dict[str, Path], schedule: list[str], size: int, threads: int) -> dict[str, dict]:
    """``fgbg train`` on every store at once, each with ``threads`` torch threads and no loader workers, its output
    in RUN.log beside its run folder: {name: its summary.json plus the wall seconds of its process}."""
    started, procs = {}, {}
    for name, store in stores.items():
        if runs[name].exists():
            shutil.rmtree(runs[name])
        cmd = fgbg_cli("train", str(store), "--out", str(runs[name]), "--size", str(size), "--batch", "16", "--val", "random",
                       "--val-fraction", "0.05", "--threads", str(threads), "--workers", "0", "--quiet", *schedule)  # fmt: skip
        log = open(runs[name].with_suffix(".log"), "w")
        started[name], procs[name] = time.perf_counter(), subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child holds its own copy
    results = {}
    for name, proc in procs.items():
        if proc.wait() != 0:
            sys.exit(f"fgbg train on {stores[name]} failed (exit {proc.returncode}); see {runs[name].with_suffix('.log')}")
        summary = json.loads((runs[name] / "summary.json").read_text())
        results[name] = {**summary, "wall_seconds": time.perf_counter() - started[name]}
    return results


def read_rgb(path: Path) -> torch.Tensor:
    """float32 (3, H, W) on [0, 1]."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def read_mask(path: Path) -> torch.Tensor:
    """bool (1, H, W): the PNG's pixels >= 128."""
    return torch.from_numpy(np.array(Image.open(path).convert("L")) >= 128)[None]


@torch.inference_mode()
def folder_scores(net, threshold: float, folder: Path, batch: int = SCORE_BATCH) -> dict:
    """Mean per-image mask IoU of ``net`` (a NormalizedNet on the CPU) and of differencing at ``threshold``
    on an independent compositor's MODE folder ({bg,composite,mask}/NNNNN.png)."""
    names = sorted(p.name for p in (folder / "mask").glob("*.png"))
    model, differencing = [], []
    for i in range(0, len(names), batch):
        part = names[i : i + batch]
        bg = torch.stack([read_rgb(folder / "bg" / n) for n in part])
        fg_bg = torch.stack([read_rgb(folder / "composite" / n) for n in part])
        mask = torch.stack([read_mask(folder / "mask" / n) for n in part])
        model.append(mask_iou(binarize(net(bg, fg_bg).mask_logits), mask))
        differencing.append(mask_iou(baseline_mask(bg, fg_bg, threshold), mask))
    return {"mask_iou": torch.cat(model).double().mean().item(), "baseline_mask_iou": torch.cat(differencing).double().mean().item(), "n_images": len(names)}


def score_model(checkpoint: Path, plain_store: Path, independent: Path, modes: tuple[str, ...], out: Path) -> dict[str, dict]:
    """{test set: metrics} of one checkpoint: "fgbg plain" (fgbg evaluate's) and each independent mode."""
    m = evaluate(checkpoint, plain_store, out, log=lambda _: None, progress=False, robustness="none", device="cpu")
    scores = {"fgbg plain": {k: m[k] for k in ("mask_iou", "baseline_mask_iou", "depth_delta1", "depth_rmse", "n_images")}}
    net, meta = inference_net(checkpoint)
    for mode in modes:
        scores[f"independent {mode}"] = folder_scores(net, meta["baseline"]["threshold"], independent / mode)
    return scores


def goals(scores: dict[str, dict[str, dict]], modes: tuple[str, ...]) -> list[dict]:
    """The issue's three goals from {model: {test set: metrics}}: [{goal, value (IoU points), met}]."""
    iou = {name: {test: s["mask_iou"] for test, s in by.items()} for name, by in scores.items()}
    hard = f"independent {HARDEST}" if HARDEST in modes else f"independent {modes[-1]}"
    gain = iou["variety"][hard] - iou["plain"][hard]
    loss = iou["plain"]["fgbg plain"] - iou["variety"]["fgbg plain"]
    gap = abs(iou["variety"]["fgbg plain"] - iou["variety"][hard])
    mean = {name: sum(iou[name][f"independent {m}"] for m in modes) / len(modes) for name in MODELS}
    return [
        {"goal": f"variety - plain on {hard} >= {100 * GOAL_GAIN:g} points", "value": 100 * gain, "met": gain >= GOAL_GAIN - EPS},
        {"goal": f"plain - variety on fgbg plain <= {100 * GOAL_LOSS:g} points", "value": 100 * loss, "met": loss <= GOAL_LOSS + EPS},
        {"goal": f"|variety on fgbg plain - variety on {hard}| <= {100 * GOAL_GAP:g} point", "value": 100 * gap, "met": gap <= GOAL_GAP + EPS},
        {"goal": "(beside it) variety - plain, mean of the independent modes", "value": 100 * (mean["variety"] - mean["plain"]), "met": None},
    ]


def table(scores: dict[str, dict[str, dict]]) -> list[str]:
    tests = list(next(iter(scores.values())))
    lines = ["| test set (held-out bgs x held-out fgs) | images | plain: mask IoU | variety: mask IoU | variety - plain (points) | differencing | plain: depth delta1 | variety: depth delta1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for test in tests:
        p, v = scores["plain"][test], scores["variety"][test]
        depth = lambda s: f"{s['depth_delta1']:.4f}" if "depth_delta1" in s else "-"  # noqa: E731
        lines.append(f"| {test} | {p['n_images']} | {p['mask_iou']:.4f} | {v['mask_iou']:.4f} | {100 * (v['mask_iou'] - p['mask_iou']):+.2f} |"
                     f" {p['baseline_mask_iou']:.4f} | {depth(p)} | {depth(v)} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-variety"))
    p.add_argument("--minutes", type=float, default=8.0, help="each run's wall-clock budget, both running at once (default 8)")
    p.add_argument("--epochs", type=int, default=0, help="a fixed schedule of this many epochs for both instead (default 0: sized to --minutes)")
    p.add_argument("--size", type=int, default=96, help="store and training side in pixels (default 96)")
    p.add_argument("--placements", type=int, default=20, help="placements per (bg, fg, flip) of each training store (default 20)")
    p.add_argument("--held-out-placements", type=int, default=10, help="of the fgbg plain test store (default 10)")
    p.add_argument("--count", type=int, default=200, help="independent composites per mode (default 200)")
    p.add_argument("--modes", type=compositor.parse_modes, default=compositor.MODES, help="independent compositor modes (default all)")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="torch threads of each run (default half the cores)")
    args = p.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    split = split_assets(*demo_assets(), HELD_OUT_BGS, HELD_OUT_FGS)
    dirs = {kind: copied(files, out / "assets" / kind) for kind, files in split.items()}
    for kind in ("bg", "fg"):  # a rerun into the same --out must not keep files of another split
        assert {f.name for f in dirs[kind].iterdir()}.isdisjoint(f.name for f in split[f"held_{kind}"]), f"{dirs[kind]} holds held-out files"
    print(f"held out: bgs {', '.join(f.name for f in split['held_bg'])}; fgs {', '.join(f.name for f in split['held_fg'])}"
          f" ({len(split['bg'])} bgs x {len(split['fg'])} fgs left to train on)")  # fmt: skip

    stores = {name: out / f"{name}-store" for name in MODELS}
    configs = {name: make_training_store(dirs["bg"], dirs["fg"], stores[name], args.size, args.placements, name == "variety") for name in MODELS}
    held_store = out / "held-out-plain-store"
    if held_store.exists():
        shutil.rmtree(held_store)
    generate(dirs["held_bg"], dirs["held_fg"], held_store, GenerateConfig(size=args.size, fg_size=args.size // 2, placements=args.held_out_placements), progress=False)
    independent = out / "independent"
    if independent.exists():
        shutil.rmtree(independent)
    compositor.make(dirs["held_bg"], dirs["held_fg"], independent, (args.size, args.size), args.count, 0, args.modes)
    varied = {k: v for k, v in configs["variety"].items() if configs["plain"].get(k) != v}
    for name in MODELS:
        counts = json.loads((stores[name] / "dataset.json").read_text())["counts"]
        print(f"{name} store: {counts['samples']} samples of {args.size} px; variety draws recorded: {recorded_draws(stores[name]) or 'none'}")
    print(f"--variety's config beside plain's: {varied or 'the same'}")

    schedule = ["--epochs", str(args.epochs)] if args.epochs else ["--max-minutes", str(args.minutes)]
    load_before = os.getloadavg()
    runs = train_together(stores, {name: out / f"{name}-run" for name in MODELS}, schedule, args.size, args.threads)
    load_after = os.getloadavg()
    for name, s in runs.items():
        print(f"{name}: {s['global_step']} steps ({s['epochs_done']} epochs), {s['seconds'] / 60:.2f} min in train, {s['wall_seconds'] / 60:.2f} min wall,"
              f" {s['train_samples_per_s']:.0f} samples/s, {args.threads} threads ({' '.join(schedule)}, both at once)")  # fmt: skip
    print(f"load average (1 min) {load_before[0]:.2f} before training, {load_after[0]:.2f} after; {os.cpu_count()} cores")

    scores = {name: score_model(out / f"{name}-run" / "best.ckpt", held_store, independent, args.modes, out / f"{name}-eval") for name in MODELS}
    met = goals(scores, args.modes)
    lines = table(scores) + ["goals:"]
    lines += [f"  {g['goal']}: {g['value']:+.2f}" + ("" if g["met"] is None else f"  [{'yes' if g['met'] else 'NO'}]") for g in met]
    print("\n".join(lines))
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "held_out": {k: [f.name for f in v] for k, v in split.items()},
              "variety_config": varied, "training": runs, "load_average": {"before": load_before, "after": load_after}, "scores": scores, "goals": met}  # fmt: skip
    (out / "bench_variety.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "bench_variety.md").write_text("\n".join(lines) + "\n")
    print(f"written: {out / 'bench_variety.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
