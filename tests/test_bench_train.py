"""benchmarks/bench_train.py under DDP: Lightning runs the script again in every other process, which must
train and only that (not make the store again, not delete run/ while rank 0 trains into it, not report)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


class Trained(Exception):
    """Stands for the end of a training run in these tests."""


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The script as a module, its work recorded instead of done: (module, calls, out folder with a run/ in it)."""
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls, out = [], tmp_path / "bench"
    (out / "run").mkdir(parents=True)
    (out / "run" / "run.json").write_text("{}")  # what rank 0 has written by the time the others start

    def train(store, run, *args, **kwargs):
        calls.append(("train", run.exists()))
        raise Trained

    monkeypatch.setattr(module, "generate", lambda *args, **kwargs: calls.append(("generate",)) or "made")
    monkeypatch.setattr(module, "loader_rate", lambda *args: calls.append(("loader_rate",)) or (1.0, (1, 4)))
    monkeypatch.setattr(module, "train", train)
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--out", str(out), "--accelerator", "cpu"])
    return module, calls, out


def test_another_rank_only_trains_and_leaves_run_to_rank_0(bench, monkeypatch):
    module, calls, out = bench
    monkeypatch.setattr(module, "process_rank", lambda: 1)
    with pytest.raises(Trained):
        module.main()
    assert calls == [("train", True)]  # no store made again, no loader timing, run/ left as rank 0 wrote it
    assert (out / "run" / "run.json").exists()


def test_rank_0_makes_the_store_and_starts_from_an_empty_run(bench, monkeypatch):
    module, calls, out = bench
    monkeypatch.setattr(module, "process_rank", lambda: 0)
    with pytest.raises(Trained):
        module.main()
    assert calls == [("generate",), ("loader_rate",), ("train", False)]
