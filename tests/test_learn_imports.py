"""fgbg.learn's modules import one another without a circle, counting the imports made only for type
checking (a circle there is still a circle a reader has to untangle), and the old import paths keep working."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import fgbg.learn

LEARN = Path(fgbg.learn.__file__).parent


def module_level_imports(path: Path) -> set[str]:
    """The fgbg.learn modules a file imports at module level, ``if TYPE_CHECKING:`` blocks included
    (imports inside functions are deferred on purpose and are not part of the layering)."""
    found, tree = set(), ast.parse(path.read_text())
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If):
            nodes.extend(node.body + node.orelse)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "fgbg.learn":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("fgbg.learn."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("fgbg.learn."))
    return found


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as the list of modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_of_fgbg_learn_is_in_an_import_circle():
    graph = {p.stem: module_level_imports(p) for p in LEARN.glob("*.py") if p.stem != "__init__"}
    assert graph["train"] >= {"budget", "resume", "callbacks", "train_config"}  # the parser sees the imports
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_train_config_is_one_class_under_every_import_path_and_loads_no_torch():
    code = ("import sys; from fgbg.learn.train_config import TrainConfig; TrainConfig(); loaded = 'torch' in sys.modules; "
            "from fgbg.learn.train import TrainConfig as T; from fgbg.learn import budget, resume; "
            "print(loaded, T is TrainConfig)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


HEAVY = [m for m in ("transformers", "scipy") if importlib.util.find_spec(m) is not None]


@pytest.mark.skipif(not HEAVY, reason="neither transformers nor scipy is installed: nothing to leave out")
def test_the_training_command_line_imports_neither_transformers_nor_scipy_where_they_are_installed(tmp_path):
    for verb in (["train", str(tmp_path / "no-store"), "--out", str(tmp_path / "run")],
                 ["evaluate", str(tmp_path / "no.ckpt"), str(tmp_path / "no-store"), "--out", str(tmp_path / "e")]):
        code = (f"import sys; from fgbg.cli import main; assert main({verb!r}) == 2; from torchmetrics import Metric; "
                f"import lightning; print([m for m in {HEAVY!r} if m in sys.modules])")  # a refused run imported them all
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip().splitlines()[-1] == "[]", verb  # after any note the verb printed


@pytest.mark.skipif(not HEAVY, reason="neither transformers nor scipy is installed")
def test_importing_the_library_changes_nothing_outside_fgbg():
    """A notebook that imports fgbg.learn (or reaches fgbg.train through the public API) keeps every
    torchmetrics metric: the import hook is the command line's alone."""
    code = ("import sys, fgbg, fgbg.learn, fgbg.learn.train, fgbg.learn.evaluate; fgbg.train; hooks = list(sys.meta_path); "
            "import torchmetrics; from torchmetrics.utilities.imports import _TRANSFORMERS_GREATER_EQUAL_4_4; "
            "print(all(type(f).__module__ != 'fgbg.learn.lean_imports' for f in hooks), 'scipy.signal' in sys.modules,"
            " bool(_TRANSFORMERS_GREATER_EQUAL_4_4))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", str("scipy" in HEAVY), str("transformers" in HEAVY)]


@pytest.mark.skipif(not HEAVY, reason="neither transformers nor scipy is installed")
def test_a_process_that_imported_torchmetrics_first_keeps_what_it_had():
    code = "import sys, torchmetrics, fgbg.learn.train; print('scipy.signal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(importlib.util.find_spec("scipy") is not None)
