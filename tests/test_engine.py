"""The local engine never hangs and never half-fails; one ONNX Runtime session builder.

Every call that could hang on a regression runs in a subprocess (its own process group)
with a timeout, so a hang fails the test instead of stalling the suite. The task
functions below are module-level: the spawned workers import them from here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # a run that has not ended by then hangs
SECONDS = 30  # "within seconds", generous for two shared cores and spawn start-up


# ---------------------------------------------------------------- tasks the workers run


def square(task: int) -> tuple[int, int]:
    """``task * task`` and the pid that computed it; some task ids misbehave on purpose."""
    from fgbg.errors import CorruptStore

    if task == 4:
        raise ValueError(f"bad task {task}")
    if task == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    if task == 7:
        raise CorruptStore(f"x{task}.png: truncated; fix it and rerun")
    if task == 8:
        os._exit(3)
    return task * task, os.getpid()


def open_asset(path: str) -> None:
    """An initializer that reads a file, as ``Renderer.from_store`` does."""
    Path(path).read_bytes()


def sleep_and_record(folder: str) -> None:
    """Write this worker's pid into ``folder`` and sleep (a long shard)."""
    Path(folder, str(os.getpid())).write_text("")
    time.sleep(TIMEOUT)


def map_and_report(fn: str, tasks: list, workers: int, **kwargs) -> None:
    """Run ``map_shards`` and print 'parent PID', 'result VALUE PID' per result, or 'error TYPE: MESSAGE' (exit 3)."""
    from fgbg.engine.local import map_shards

    print("parent", os.getpid(), flush=True)
    kwargs = {k: globals()[v] if k == "initializer" else v for k, v in kwargs.items()}
    try:
        for value, pid in map_shards(globals()[fn], tasks, workers=workers, progress=False,
                                     describe=lambda t: f"task-{t}", **kwargs):  # fmt: skip
            print("result", value, pid, flush=True)
    except Exception as e:
        print(f"error {type(e).__name__}: {e}", flush=True)
        sys.exit(3)


# ---------------------------------------------------------------- helpers


def run_python(code: str, *args: str, timeout: float = TIMEOUT, env: dict | None = None):
    """``python -c code args`` from the repository root; (CompletedProcess, seconds). Fails on a hang."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout} s (hangs); stderr ends:\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - started


def run_map(fn: str, tasks: list, workers: int, env: dict | None = None, **kwargs):
    code = f"from tests.test_engine import map_and_report; map_and_report({fn!r}, {tasks!r}, {workers!r}, **{kwargs!r})"
    return run_python(code, env=env)


def parse(stdout: str) -> tuple[int, list[tuple[int, int]], str | None]:
    """(parent pid, [(value, pid)] in the order yielded, the error line or None)."""
    lines = stdout.splitlines()
    parent = int(lines[0].split()[1])
    results = [tuple(int(x) for x in line.split()[1:]) for line in lines if line.startswith("result ")]
    errors = [line for line in lines if line.startswith("error ")]
    assert len(errors) <= 1
    return parent, results, errors[0] if errors else None


# ---------------------------------------------------------------- map_shards


def test_workers_0_runs_here_and_n_spawns_n_processes():
    from fgbg.engine.local import map_shards
    from fgbg.errors import UserError

    for workers, processes in ((0, 0), (1, 1), (3, 3), (9, 5)):
        result, _ = run_map("square", [0, 1, 2, 3, 5], workers)
        parent, results, error = parse(result.stdout)
        assert result.returncode == 0 and error is None
        assert sorted(v for v, _ in results) == [0, 1, 4, 9, 25]
        pids = {pid for _, pid in results}
        if processes == 0:
            assert pids == {parent}
        else:  # at most one per task; which worker ran which task is up to the OS
            assert parent not in pids and 1 <= len(pids) <= processes
    with pytest.raises(UserError, match="--workers must be 0 or more"):
        map_shards(square, [1], workers=-1)


@pytest.mark.parametrize(
    "workers, bad, error",
    [
        (0, 4, "error WorkerFailed: task-4 failed: ValueError: bad task 4"),
        (1, 4, "error WorkerFailed: task-4 failed: ValueError: bad task 4"),
        (1, 7, "error CorruptStore: x7.png: truncated; fix it and rerun"),  # a UserError arrives as it was
    ],
)
def test_a_failing_task_ends_the_run_in_one_line_and_keeps_what_finished(workers, bad, error):
    result, seconds = run_map("square", [0, 1, 2, 3, bad, 5], workers)
    parent, results, line = parse(result.stdout)
    assert result.returncode == 3 and seconds < SECONDS
    assert line.startswith(error) and "\n" not in line
    assert [v for v, _ in results] == [0, 1, 4, 9]  # one task at a time: all before, none after
    pids = {pid for _, pid in results}
    assert pids == {parent} if workers == 0 else len(pids) == 1 and parent not in pids
    assert "Traceback" not in result.stderr


def test_fgbg_debug_prints_the_workers_traceback():
    result, _ = run_map("square", [0, 4], 1, env={"FGBG_DEBUG": "1"})
    assert result.returncode == 3 and parse(result.stdout)[2].startswith("error WorkerFailed: task-4 failed")
    assert "Traceback" in result.stderr and 'raise ValueError(f"bad task {task}")' in result.stderr


def test_an_initializer_that_raises_ends_the_run_naming_the_task_and_cause(tmp_path):
    missing = tmp_path / "assets" / "fg" / "f000.png"
    result, seconds = run_map("square", list(range(4)), 2, initializer="open_asset", initargs=(str(missing),))
    _, results, line = parse(result.stdout)
    assert result.returncode == 3 and seconds < SECONDS and results == []
    assert re.fullmatch(rf"error WorkerFailed: task-\d failed: FileNotFoundError: .*{re.escape(str(missing))}.*", line)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad, death", [(6, "was killed by signal SIGKILL"), (8, "exited with code 3")])
def test_a_worker_that_dies_ends_the_run_naming_the_signal_and_the_task(bad, death):
    result, seconds = run_map("square", [0, 1, bad, 2, 3], 2)
    _, results, line = parse(result.stdout)
    assert result.returncode == 3 and seconds < SECONDS
    assert re.fullmatch(rf"error WorkerFailed: worker pid \d+ {death}.* while running task-{bad}", line)
    assert {v for v, _ in results} <= {0, 1, 4, 9} and "Traceback" not in result.stderr


def test_a_worker_that_dies_while_starting_with_a_large_payload_fails_instead_of_hanging(tmp_path):
    """A spawned child that cannot start (here: its parent's __main__ came from stdin, which it cannot
    re-run) must not leave the parent blocked writing a megabyte payload to it."""
    code = (
        "from fgbg.engine import map_shards\n"
        "from tests.test_engine import square_with_payload\n"
        "list(map_shards(square_with_payload, [1, 2], workers=2, progress=False, shared=b'x' * 4_000_000))\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert time.perf_counter() - started < SECONDS
    assert result.returncode == 1 and "WorkerFailed: worker pid" in result.stderr and "exited with code 1" in result.stderr


def square_with_payload(payload: bytes, x: int) -> int:
    return x * x + len(payload) * 0


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_die_quietly_with_their_parent(tmp_path):
    pids, log = tmp_path / "pids", tmp_path / "stderr.txt"
    pids.mkdir()
    code = f"from tests.test_engine import map_and_report; map_and_report('sleep_and_record', [{str(pids)!r}] * 2, 2)"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + SECONDS
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(pid) for pid in workers), "orphaned workers outlive their parent"
        assert log.read_text() == ""
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- generate, end to end

GENERATE = """
import sys
from pathlib import Path
import fgbg.make.generate as g
{patch}
from fgbg.cli import main
sys.exit(main(sys.argv[1:]))
"""

LOSE_AN_ASSET = """
write_assets = g.write_assets
def write_then_lose_one(out, assets, config):
    write_assets(out, assets, config)
    (Path(out) / "assets" / "fg" / "f000.png").unlink()  # unreadable after planning, before the assets are read back
g.write_assets = write_then_lose_one
"""

NO_PARENT_NETWORK_CHECK = """
def pretend_the_network_loaded(config, assets, *warn):
    scales = [[0.0, 1.0]] * len(assets.bg)
    return {"depth_model": {"backend": "onnxruntime", "model": "garbage.onnx"}, "depth_scales": scales}
g.prepare_network_depth = pretend_the_network_loaded  # only the workers load the model
g.load_estimator = lambda *args: None
"""


def small_args(folders, out: Path, *extra: str) -> list[str]:
    bg, fg = folders
    return ["generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out), "--size", "64", "--fg-size", "32",
            "--placements", "2", "--shard-size", "7", "--workers", "2", "--quiet", *extra]  # fmt: skip


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def shard_bytes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.tar"))}


def test_an_asset_unreadable_after_planning_fails_in_one_line_then_a_rerun_completes(folders, tmp_path):
    out = tmp_path / "out"
    failed, seconds = run_python(GENERATE.format(patch=LOSE_AN_ASSET), *small_args(folders, out))
    assert failed.returncode == 2 and seconds < SECONDS  # CorruptStore, from the parent that reads the assets once
    [line] = stderr_lines(failed)
    assert str(out / "assets" / "fg" / "f000.png") in line and "Traceback" not in failed.stderr
    assert not (out / "dataset.json").exists()
    fixed, _ = run_python(GENERATE.format(patch=""), *small_args(folders, out))
    assert fixed.returncode == 0, fixed.stderr
    whole, _ = run_python(GENERATE.format(patch=""), *small_args(folders, tmp_path / "whole"))
    assert whole.returncode == 0 and len(shard_bytes(out)) > 1 and shard_bytes(out) == shard_bytes(tmp_path / "whole")


def test_a_model_only_the_workers_load_fails_in_one_line_naming_the_file(folders, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an ONNX model" * 10)
    args = small_args(folders, tmp_path / "out", "--depth", "estimator", "--depth-model", str(garbage))
    result, seconds = run_python(GENERATE.format(patch=NO_PARENT_NETWORK_CHECK), *args)
    assert result.returncode != 0 and seconds < SECONDS
    [line] = stderr_lines(result)
    assert str(garbage) in line and "not a valid ONNX model" in line and "Traceback" not in result.stderr


def listen_to_ctrl_c() -> None:
    """In the child before it runs: SIGINT at its default, as a terminal's foreground job has it. A child
    inherits an ignored SIGINT (a test run started in the background by a script: the suite's one failure
    of this test, exit 0) and Python then installs no handler: the Ctrl-C would be lost, the run complete."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def catches_sigint(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGINT (Python's, once it has started), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & 1 << (signal.SIGINT - 1))
    return False


INTERRUPTS = 10  # Ctrl-C, one run after another: 130 every time


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal handlers from /proc")
def test_ctrl_c_mid_run_exits_130_without_worker_tracebacks(folders, tmp_path):
    bg, fg = folders
    for attempt in range(INTERRUPTS):
        out = tmp_path / f"out{attempt}"
        cmd = [sys.executable, "-m", "fgbg", "generate", "--bg", str(bg), "--fg", str(fg), "--out", str(out),
               "--size", "160", "--fg-size", "80", "--placements", "300", "--shard-size", "40", "--workers", "2", "--quiet"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=listen_to_ctrl_c)  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        # mid-run, as observed: the parent listens for Ctrl-C and has committed a shard, its workers are on the next ones
        while not list((out / ".work").glob("shard-*.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None and catches_sigint(proc.pid), "the run ended, or does not listen for Ctrl-C, before it"
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: to the parent and every worker
        try:
            _, err = proc.communicate(timeout=SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("still running after Ctrl-C")
        assert proc.returncode == 130, (attempt, err)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Worker" not in err, (attempt, err)
        assert not (out / "dataset.json").exists(), "the interrupt should land mid-run"
        assert len([line for line in err.splitlines() if line.strip()]) <= 2, err


def test_progress_counts_the_samples_and_the_shards_done(capsys):
    from fgbg.engine import map_shards

    assert sorted(map_shards(abs, [1, -2, 3], weights=[10, 20, 30], workers=0, progress=None, desc="job")) == [1, 2, 3]
    last = capsys.readouterr().err.strip().splitlines()[-1]  # stderr is no terminal here: log lines
    assert last.startswith("job (3/3 shards): 60/60 samples (100%)")


def test_engine_options_are_refused_in_one_line(tmp_path, capsys):
    from fgbg.cli import main
    from fgbg.engine import check_engine
    from fgbg.errors import UserError

    with pytest.raises(UserError, match="--workers 0 works in this process"):
        check_engine("ray", 0)
    with pytest.raises(UserError, match="--engine must be one of local, ray"):
        check_engine("spark")
    with pytest.raises(SystemExit) as exit:
        main(["verify", str(tmp_path), "--engine", "spark"])
    assert exit.value.code == 2 and "invalid choice: 'spark'" in capsys.readouterr().err
    if importlib.util.find_spec("ray") is not None:  # a head node that is not there: one line, at once (Ray retries for minutes)
        from fgbg.engine.ray_engine import connect

        with pytest.raises(UserError, match=r"--ray-address 127.0.0.1:1: nothing answers there"):
            connect("127.0.0.1:1")


def test_a_worker_that_cannot_see_the_store_fails_in_one_line(tmp_path):
    """A cluster node without the shared file system: the shard task says so, naming the path."""
    from fgbg.errors import UserError
    from fgbg.inspect.stats import shard_stats
    from fgbg.make.render import render_shard

    elsewhere = str(tmp_path / "not-mounted-here")
    with pytest.raises(UserError, match=rf"{re.escape(elsewhere)}: not visible on node .* a file system every node sees"):
        render_shard((None, 1), (elsewhere, 0, 0, 7))
    with pytest.raises(UserError, match=rf"{re.escape(elsewhere)}: not visible on node"):
        shard_stats((elsewhere, 0, ("mask",)))


# ---------------------------------------------------------------- the ONNX Runtime session builder


def test_onnx_session_names_a_missing_or_invalid_model_and_loads_a_real_one(tmp_path):
    from fgbg.depth.testing import tiny_onnx_depth
    from fgbg.engine.devices import onnx_session
    from fgbg.errors import UserError

    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'none.onnx'}: no such ONNX model file")):
        onnx_session(tmp_path / "none.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    with pytest.raises(UserError, match=re.escape(f"{garbage}: not a valid ONNX model")):
        onnx_session(garbage)
    session = onnx_session(tiny_onnx_depth(tmp_path / "depth.onnx"), threads=2)
    options = session.get_session_options()
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
