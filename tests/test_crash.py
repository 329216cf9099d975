"""SIGKILL `generate` at 20 seeded points of its durable-write steps, rerun, and get the very same store.

The seam: with FGBG_CRASH_STEPS=FILE every durable-write step (fsync, rename, record; in
the parent and in the workers) appends a byte to FILE, and with FGBG_CRASH_AT=N the N-th
step of the run SIGKILLs its whole process group (see ``fgbg.store.layout.crash_point``).
An uninterrupted run counts the steps; 20 of them are drawn per case with a seeded
random.Random. A run killed while workers render uses 2 workers, so kills land in workers
as well as in the parent, with two shards in flight. The rerun goes to the end; then every
file of the store (names and bytes) must equal the uninterrupted run's, and ``verify`` pass.

Runs are forked from one small server process that has imported fgbg once (a run then costs
a fork, not an interpreter start); each run is its own session, so a kill is a real SIGKILL
of the run and its workers and nothing else.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fgbg.demo import demo_assets
from fgbg.depth.testing import tiny_onnx_depth
from fgbg.inspect.verify import verify
from fgbg.store.layout import CRASH_AT_ENV, CRASH_STEPS_ENV
from fgbg.store.lock import LOCK_FILE

from .conftest import copy_images

POINTS = 20  # kill points per case
SEED = 11
TINY = ["--size", "32", "--fg-size", "16", "--placements", "3", "--shard-size", "4", "--no-progress"]

# Reads one JSON job per line ({"argv", "env", "log"}), runs `fgbg` in a forked child in its own
# session, prints the child's exit code (-9 for SIGKILL) as one line.
SERVER = r"""
import json, os, sys, traceback
import fgbg.cli, fgbg.make.generate, fgbg.make.render, fgbg.inspect.verify, onnxruntime
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.environ.update(job["env"])
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            rc = fgbg.cli.main(job["argv"])
        except BaseException:
            traceback.print_exc()
            rc = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Runner:
    """`fgbg ARGS` in a forked child of the server; returns its exit code and keeps its output."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.runs = folder, 0
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __call__(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        self.runs += 1
        log = self.folder / f"run-{self.runs}.log"
        self.server.stdin.write(json.dumps({"argv": argv, "env": env or {}, "log": str(log)}) + "\n")
        self.server.stdin.flush()
        reply = self.server.stdout.readline()
        assert reply, "the run server died"
        return int(reply), log.read_text()

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=30)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(tmp_path_factory.mktemp("runs"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """2 real bgs, 2 real fgs and a tiny ONNX depth network."""
    root = tmp_path_factory.mktemp("inputs")
    bg_src, fg_src = demo_assets()
    bg = copy_images(bg_src, root / "bg", 2, "*.jpg")
    fg = copy_images(fg_src, root / "fg", 2, "*.png")
    return bg, fg, tiny_onnx_depth(root / "tiny_depth.onnx")


def snapshot(store: Path) -> dict[str, bytes | None]:
    """Every file and folder of a store by relative path: files' bytes, folders None.

    The lock file is kept by name only: it records its last holder (a pid and a time).
    """
    return {
        p.relative_to(store).as_posix(): None if p.is_dir() or p.name == LOCK_FILE else p.read_bytes()
        for p in sorted(store.rglob("*"))
    }


CASES = {
    "wds": ["--format", "wds"],
    "folder": ["--format", "folder"],
    "zip": ["--format", "zip"],
    "estimator": ["--format", "wds", "--depth", "estimator", "--depth-batch", "4"],
    "objects": ["--format", "wds", "--objects", "2:4"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_at_any_step_then_rerun_gives_the_uninterrupted_store(case, runner, inputs, tmp_path):
    bg, fg, model = inputs
    args = ["generate", "--bg", str(bg), "--fg", str(fg), *TINY, *CASES[case]]
    if case == "estimator":
        args += ["--depth-model", str(model)]
    whole, steps = tmp_path / "whole", tmp_path / "steps"
    rc, log = runner([*args, "--out", str(whole), "--workers", "2"], {CRASH_STEPS_ENV: str(steps)})
    assert rc == 0, log
    marks = steps.read_text()  # one letter per step: "p" the main process, "w" a worker
    workers_alive = range(marks.index("w") + 1, marks.rindex("w") + 2)  # steps while workers run
    reference = snapshot(whole)
    assert verify(whole, workers=0).ok
    assert len(marks) > 50 and not any(name.endswith(".tmp") or name.startswith(".work") for name in reference)

    points = sorted(random.Random(f"{SEED}-{case}").sample(range(1, len(marks) + 1), POINTS))
    for n in points:
        out = tmp_path / f"killed-at-{n}"
        env = {CRASH_STEPS_ENV: str(tmp_path / f"steps-{n}"), CRASH_AT_ENV: str(n)}
        # outside that stretch the steps are the same in one process: no need to pay for spawning workers
        workers = "2" if n in workers_alive else "0"
        rc, log = runner([*args, "--out", str(out), "--workers", workers], env)
        assert rc == -signal.SIGKILL, f"step {n} of {len(marks)}: the run was not killed (exit {rc})\n{log}"
        rc, log = runner([*args, "--out", str(out), "--workers", "0"])
        assert rc == 0, f"killed at step {n} of {len(marks)}, the rerun failed:\n{log}"
        assert snapshot(out) == reference, f"killed at step {n} of {len(marks)}: not the uninterrupted run's store"
        report = verify(out, workers=0)
        assert report.ok, f"killed at step {n} of {len(marks)}: {report}"
