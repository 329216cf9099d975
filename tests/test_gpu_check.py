"""benchmarks/gpu_check.py --smoke: every part of the GPU check at tiny sizes on the CPU, so that the
one prepared command cannot rot between the times a GPU is at hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ["install", "machine", "cuda_tests", "train", "learning", "depth", "rooms", "channels", "train_compile"]


def gpu_check(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the check from another folder than the repository's; (its process, its JSON report)."""
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(CHECK), "--smoke", "--out", str(out), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert out.exists(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def figure(report: dict, part: str, name: str):
    return next(f["value"] for f in report["parts"][part]["figures"] if f["name"].startswith(name))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return gpu_check(tmp_path_factory.mktemp("smoke"))


def test_every_part_has_figures_with_units_or_says_why_not(smoke):
    proc, report = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(report["parts"]) == PARTS and report["smoke"] is True
    for name, part in report["parts"].items():
        assert "failed" not in part, (name, part.get("log_tail"))
        assert part.get("figures") or part.get("skipped"), name
        for f in part.get("figures", []):
            assert f["value"] not in (None, "") and isinstance(f["unit"], str), (name, f)
    assert "--wheels" in report["parts"]["install"]["skipped"]
    assert "--smoke" in report["parts"]["train_compile"]["skipped"]
    table = proc.stdout
    assert "fgbg GPU check (--smoke)" in table.splitlines()[0] and all(name in table for name in PARTS)
    logs = Path(report["logs"])
    assert logs.name == "check-logs" and sorted(p.stem for p in logs.glob("*.log")) == sorted(p for p in PARTS if "skipped" not in report["parts"][p])


def test_the_figures_are_this_machines(smoke):
    _, report = smoke
    assert figure(report, "machine", "torch") == torch.__version__
    assert figure(report, "machine", "GPU").startswith("none visible")  # --smoke hides a GPU from fgbg
    assert figure(report, "cuda_tests", "cuda tests skipped") >= 1 and figure(report, "cuda_tests", "cuda tests failed") == 0
    assert figure(report, "train", "training, steady") > 0 and 0 <= figure(report, "train", "waiting for data") < 100
    assert 0 <= figure(report, "learning", "held-out mask IoU") <= 1 and 0 < figure(report, "learning", "differencing baseline") <= 1
    assert figure(report, "depth", "network at 28 px, batch 1") > 0 and figure(report, "depth", "generate --depth estimator, batch 1") > 0
    assert figure(report, "depth", "generate --depth estimator-per-bg") > 0  # bench_depth's other line, read apart
    assert figure(report, "rooms", "numpy: fgbg rooms end to end") > 0


def test_a_part_that_does_not_fit_is_skipped_and_says_so(tmp_path):
    proc, report = gpu_check(tmp_path, "--budget-minutes", "0")
    assert proc.returncode == 0 and list(report["parts"]) == PARTS
    assert all("not started" in report["parts"][name]["skipped"] for name in ("machine", "learning", "rooms"))
    assert "--parts learning" in report["parts"]["learning"]["skipped"]  # how to run it alone
    proc, report = gpu_check(tmp_path, "--parts", "learning", "--box", "learning=1")  # importing torch alone takes longer
    assert proc.returncode == 0 and list(report["parts"]) == ["learning"]
    assert report["parts"]["learning"]["skipped"].startswith("ran past its 1 s box and was stopped")
    assert report["parts"]["learning"]["seconds"] < 30  # stopped, with what it started (loader workers, generate's pool)


def test_wrong_arguments_are_one_line_before_anything_is_written(tmp_path):
    for args, says in ((["--wheels", str(tmp_path / "none")], "--wheels"), (["--parts", "train,gpu"], "unknown gpu")):
        proc = subprocess.run([sys.executable, str(CHECK), "--out", str(tmp_path / "x.json"), *args], capture_output=True, text=True)
        assert proc.returncode == 2 and says in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.json").exists()
