"""benchmarks/bench_train.py --hold-out bg,fg (the default) at a tiny size: the network never trains on the
held-out backgrounds or foregrounds, is evaluated on composites of those alone beside the differencing
baseline, and the printed curve has the network at each --at mark and at the end."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_train.py"


def files(store: Path, kind: str) -> set[str]:
    return {s["file"] for s in json.loads((store / "dataset.json").read_text())["sources"][kind]}


def test_held_out_bgs_and_fgs_are_only_evaluated_on_and_the_curve_is_printed(tmp_path):
    args = ["--out", str(tmp_path), "--size", "32", "--placements", "1", "--held-out-placements", "1", "--minutes", "0.15",
            "--at", "0.04", "--width", "8", "--threads", "1", "--batch", "8"]  # fmt: skip
    done = subprocess.run([sys.executable, str(BENCH), *args], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    train_store, held = tmp_path / "train-store", tmp_path / "held-out-store"
    demo = ROOT / "fgbg" / "demo_assets"
    bgs, fgs = sorted(p.name for p in (demo / "bg").iterdir()), sorted(p.name for p in (demo / "fg").iterdir())
    assert files(held, "bg") == set(bgs[-2:]) and files(held, "fg") == set(fgs[-3:])
    assert not files(train_store, "bg") & set(bgs[-2:]) and not files(train_store, "fg") & set(fgs[-3:])
    assert files(train_store, "bg") | files(held, "bg") == set(bgs)
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["hold_out"] == "bg,fg" and report["metrics"]["split"] == "all"
    assert report["metrics"]["store"] == str(held.resolve()) and report["metrics"]["n_images"] == 2 * 3 * 2
    curve = re.findall(r"^\s+([\d.]+) min: mask IoU ([\d.]+) \(baseline ([\d.]+), [+-][\d.]+ points\), depth delta1 ([\d.]+)", done.stdout, re.M)
    assert len(curve) == len(report["curve"]) == 2, done.stdout  # the --at mark, then the end
    assert float(curve[0][0]) >= 0.04 and float(curve[-1][1]) == round(report["metrics"]["mask_iou"], 4)
    assert {c[2] for c in curve} == {f"{report['metrics']['baseline_mask_iou']:.4f}"}  # one baseline: the same images
    # the robustness report of the same images, with the goals beside it
    rows = report["metrics"]["robustness"]
    assert [r["bg"] for r in rows][:3] == ["aligned", "shift 1 px", "shift 2 px"] and rows[0]["mask_iou"] == report["metrics"]["mask_iou"]
    assert "robustness (--bg-aug real): bg input" in done.stdout and re.search(r"shift 2 px mask IoU [\d.]+  \[goal >= 0.92: (yes|NO)\]", done.stdout)
