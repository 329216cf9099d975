"""A real detector, Ultralytics YOLO-seg, trained on a plain and on a ``--variety`` store, scored on composites pasted another way (issue 27).

    YOLO_OFFLINE=1 /work/yolo-venv/bin/python benchmarks/bench_yolo_variety.py --out /tmp/bench-yolo \\
        [--epochs 6] [--placements 10] [--size 96] [--count 200] [--fgbg-python /work/main/.venv/bin/python]

Run it with a venv that holds ``torch==2.14.1 torchvision==0.29.1 ultralytics`` (not fgbg's, and never
in the test suite); fgbg itself runs in its own venv (``--fgbg-python``, with this checkout first on
PYTHONPATH), as a user runs two tools. Nothing is looked up on the network: YOLO_OFFLINE=1 is set,
the network is built from ``yolov8n-seg.yaml`` (no weights), and ``plots=False``.

1. The demo assets are split as benchmarks/bench_variety.py splits them (the last HELD_OUT_BGS
   backgrounds and the last HELD_OUT_FGS PNG cut-outs by name are held out).
2. ``fgbg generate`` of the rest, plain and with ``--variety`` (same counts), each exported with
   ``fgbg export yolo`` (its train split: held-out backgrounds of the training set as val).
3. benchmarks/independent_compositor.py (run with the fgbg venv's Python for scipy; it imports
   nothing from fgbg) pastes the held-out fgs on the held-out bgs in each of its modes; this script
   turns each mask (>= 128) into a YOLO-seg polygon with cv2 (outer contours; several parts joined
   with Ultralytics' ``merge_multi_segment``), class 0 ("fg", the class of fgbg's export).
4. One YOLO-seg per store, the same schedule (``--epochs``, batch, image size, seed, CPU threads),
   one after the other; epoch count, not minutes, is the budget, so the load of a shared machine
   changes the wall time (printed) and not what is learnt.
5. Each model validated on every independent mode (and on its own export's val split): mask mAP50
   and mAP50-95 (box mAP50 beside them), printed as a table and written to OUT/bench_yolo_variety.json.
   Expected: variety >= plain on the independent composites.

A finished model is reused when OUT/NAME/settings.json holds this run's settings and the store made
now has the same bytes (its shards' sha256) as the one it trained on (``--fresh`` to train again),
so an interrupted comparison need not train both again.
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

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported: it reads it then

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "fgbg" / "demo_assets"
COMPOSITOR = ROOT / "benchmarks" / "independent_compositor.py"
HELD_OUT_BGS, HELD_OUT_FGS = 3, 4  # as benchmarks/bench_variety.py
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MODES = ("hard", "feathered", "relit", "feathered+relit+rotated")
MODELS = ("plain", "variety")


def split_assets(bg_dir: Path, fg_dir: Path, held_bgs: int, held_fgs: int) -> dict[str, list[Path]]:
    """bench_variety.split_assets's rule, without fgbg: {"bg", "fg", "held_bg", "held_fg"} -> files."""
    bgs = sorted(f for f in bg_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.endswith(".depth.png"))
    fgs = sorted(f for f in fg_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    held_fg = [f for f in fgs if f.suffix.lower() == ".png"][-held_fgs:]
    return {"bg": bgs[:-held_bgs], "held_bg": bgs[-held_bgs:], "fg": [f for f in fgs if f not in held_fg], "held_fg": held_fg}


def copied(files: list[Path], folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, folder / f.name)
    return folder


def mask_polygon(mask: np.ndarray) -> np.ndarray | None:
    """float (N, 2) of (x, y) in [0, 1]: the mask's (uint8 (H, W), >= 128 is in) outline as one polygon; None when empty.

    Outer contours only (a hole is filled); several parts are joined by zero-width bridges between
    their closest points, as Ultralytics' COCO converter joins an object's polygons.
    """
    from ultralytics.data.converter import merge_multi_segment

    h, w = mask.shape
    contours, _ = cv2.findContours((mask >= 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = [c.reshape(-1, 2).astype(np.float64) for c in contours]
    if not parts:
        return None
    points = parts[0] if len(parts) == 1 else np.concatenate(merge_multi_segment([p.reshape(-1).tolist() for p in parts]), axis=0)
    if len(points) < 3:
        points = np.resize(points, (3, 2))  # a one-pixel sliver: there and back
    return points / np.array([w, h])


def yolo_labels(mode_dir: Path, out: Path) -> Path:
    """An independent compositor's MODE folder as a YOLO-seg dataset at ``out``: images/val (the composites),
    labels/val (class 0 and the mask's polygon), data.yaml. Returns data.yaml."""
    (out / "images" / "val").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "val").mkdir(parents=True, exist_ok=True)
    for path in sorted((mode_dir / "mask").glob("*.png")):
        shutil.copy2(mode_dir / "composite" / path.name, out / "images" / "val" / path.name)
        polygon = mask_polygon(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
        line = "" if polygon is None else "0 " + " ".join(f"{v:.6f}" for v in polygon.reshape(-1)) + "\n"
        (out / "labels" / "val" / f"{path.stem}.txt").write_text(line)
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/val\nval: images/val\nnames:\n  0: fg\n")
    return out / "data.yaml"


def fgbg(python: str, *args: str) -> None:
    """``fgbg ARGS`` in fgbg's venv, this checkout first on its path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    subprocess.run([python, "-m", "fgbg", *args], check=True, env=env)


def make_export(python: str, dirs: dict[str, Path], out: Path, size: int, placements: int, variety: bool) -> Path:
    """``fgbg generate`` (plain or ``--variety``) then ``fgbg export yolo``: the export's data.yaml."""
    store, export = out / "store", out / "yolo"
    for folder in (store, export):
        if folder.exists():
            shutil.rmtree(folder)
    flags = ["--size", str(size), "--fg-size", str(size // 2), "--placements", str(placements), "--quiet"] + (["--variety"] if variety else [])
    fgbg(python, "generate", "--bg", str(dirs["bg"]), "--fg", str(dirs["fg"]), "--out", str(store), *flags)
    fgbg(python, "export", "yolo", str(store), "--out", str(export), "--quiet")
    return export / "data.yaml"


def train(data: Path, folder: Path, settings: dict) -> tuple[Path, float]:
    """YOLO-seg from yolov8n-seg.yaml trained on ``data`` into ``folder``: (last.pt, wall seconds)."""
    from ultralytics import YOLO

    started = time.perf_counter()
    YOLO("yolov8n-seg.yaml").train(data=str(data), epochs=settings["epochs"], imgsz=settings["imgsz"], batch=settings["batch"], device="cpu",
                                   workers=settings["workers"], seed=0, deterministic=True, plots=False, project=str(folder.parent), name=folder.name,
                                   exist_ok=True, amp=False, val=False, warmup_epochs=settings["warmup_epochs"], verbose=False)  # fmt: skip
    return folder / "weights" / "last.pt", time.perf_counter() - started


def validate(weights: Path, data: Path, imgsz: int, folder: Path) -> dict:
    """mask and box mAP50, mAP50-95 of ``weights`` on ``data``'s val images."""
    from ultralytics import YOLO

    m = YOLO(str(weights)).val(data=str(data), imgsz=imgsz, batch=32, device="cpu", workers=0, plots=False, project=str(folder.parent),
                              name=folder.name, exist_ok=True, verbose=False)  # fmt: skip
    return {"mask_map50": float(m.seg.map50), "mask_map50_95": float(m.seg.map), "box_map50": float(m.box.map50)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-yolo"))
    p.add_argument("--fgbg-python", default=os.environ.get("FGBG_PYTHON", "/work/main/.venv/bin/python"), help="the Python of fgbg's venv")
    p.add_argument("--size", type=int, default=96, help="store side in pixels, and YOLO's imgsz rounded up to 32 (default 96)")
    p.add_argument("--placements", type=int, default=10, help="placements per (bg, fg, flip) of each training store (default 10: 1,820 samples)")
    p.add_argument("--epochs", type=int, default=6, help="YOLO epochs of each model (default 6: 10-15 min each on 2 shared cores)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="YOLO's warmup_epochs (default 1: its default 3 is half of a 6-epoch schedule)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="YOLO's loader workers (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default all cores)")
    p.add_argument("--count", type=int, default=200, help="independent composites per mode (default 200)")
    p.add_argument("--models", default="plain,variety", help="which to train and score (default plain,variety; the table needs both)")
    p.add_argument("--fresh", action="store_true", help="train again even where OUT/NAME holds a model of the same settings")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    split = split_assets(DEMO / "bg", DEMO / "fg", HELD_OUT_BGS, HELD_OUT_FGS)
    dirs = {kind: copied(files, out / "assets" / kind) for kind, files in split.items()}
    independent = out / "independent"
    if independent.exists():
        shutil.rmtree(independent)
    subprocess.run([args.fgbg_python, str(COMPOSITOR), "--bg", str(dirs["held_bg"]), "--fg", str(dirs["held_fg"]), "--out", str(independent),
                    "--size", str(args.size), "--count", str(args.count)], check=True)  # fmt: skip
    tests = {f"independent {mode}": yolo_labels(independent / mode, out / "independent-yolo" / mode.replace("+", "-")) for mode in MODES}
    imgsz = -(-args.size // 32) * 32
    settings = {"size": args.size, "imgsz": imgsz, "placements": args.placements, "epochs": args.epochs, "warmup_epochs": args.warmup_epochs, "batch": args.batch,
                "workers": args.workers, "threads": args.threads, "held_out": {k: [f.name for f in v] for k, v in split.items() if k.startswith("held")}}  # fmt: skip
    results = {}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for name in [m for m in MODELS if m in args.models.split(",")]:
        folder = out / name
        done = folder / "settings.json"
        earlier = json.loads(done.read_text()) if done.exists() and not args.fresh else None
        data = make_export(args.fgbg_python, dirs, folder, args.size, args.placements, name == "variety")
        shards = json.loads((folder / "store" / "dataset.json").read_text())["shards"]
        if earlier and earlier["settings"] == settings and earlier["shards"] == shards:
            record = earlier
            print(f"{name}: reusing the model trained at {record['commit']}: same settings, and this checkout's store has the same bytes")
        else:
            if (folder / "train").exists():
                shutil.rmtree(folder / "train")
            images = len(list((data.parent / "images" / "train").iterdir()))
            load = os.getloadavg()[0]
            weights, seconds = train(data, folder / "train", settings)
            record = {"settings": settings, "shards": shards, "commit": head, "train_images": images, "train_seconds": seconds, "weights": str(weights),
                      "data": str(data), "load_average": [load, os.getloadavg()[0]]}  # fmt: skip
            done.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {record['train_images']} training images, {args.epochs} epochs at imgsz {imgsz}, {record['train_seconds'] / 60:.1f} min,"
              f" load average {record['load_average'][0]:.2f} -> {record['load_average'][1]:.2f}")  # fmt: skip
        scores = {"own export's val": validate(Path(record["weights"]), Path(record["data"]), imgsz, folder / "val-own")}
        for test, data in tests.items():
            scores[test] = validate(Path(record["weights"]), data, imgsz, folder / f"val-{data.parent.name}")
        results[name] = {**record, "scores": scores}
    if set(results) != set(MODELS):
        print(json.dumps({name: r["scores"] for name, r in results.items()}, indent=1))
        return 0
    lines = ["| test set | plain: mask mAP50 | variety: mask mAP50 | plain: mask mAP50-95 | variety: mask mAP50-95 | plain: box mAP50 | variety: box mAP50 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for test in results["plain"]["scores"]:
        pl, va = results["plain"]["scores"][test], results["variety"]["scores"][test]
        lines.append(f"| {test} | {pl['mask_map50']:.3f} | {va['mask_map50']:.3f} | {pl['mask_map50_95']:.3f} | {va['mask_map50_95']:.3f} | {pl['box_map50']:.3f} | {va['box_map50']:.3f} |")
    verdict = [t for t in tests if results["variety"]["scores"][t]["mask_map50"] < results["plain"]["scores"][t]["mask_map50"]]
    lines.append("expected variety >= plain (mask mAP50) on every independent mode: " + ("yes" if not verdict else f"NO, lower on {', '.join(verdict)}"))
    print("\n".join(lines))
    (out / "bench_yolo_variety.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1) + "\n")
    (out / "bench_yolo_variety.md").write_text("\n".join(lines) + "\n")
    print(f"written: {out / 'bench_yolo_variety.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
