"""fgbg.store sits low in the floors (DESIGN.md: engine, codecs, errors and progress at the bottom; store
above config; depth, make, then rooms, inspect, learn and exports; cli and demo on top): none of its
modules imports a higher floor, nor, within the store, is any of them in an import circle. Imports
inside functions count too: a deferred import that climbs is still a climb."""

import ast
from pathlib import Path

import fgbg.store
from tests.test_learn_imports import cycle

STORE = Path(fgbg.store.__file__).parent
HIGHER_FLOORS = ("depth", "make", "rooms", "inspect", "learn", "exports", "cli", "demo")


def fgbg_imports(path: Path) -> set[str]:
    """Every fgbg module a file imports, anywhere in it, as dotted names ("fgbg.store.lock")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fgbg":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module in ("fgbg", "fgbg.store"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fgbg")
    return found


def test_no_module_of_fgbg_store_imports_a_higher_floor():
    climbs = {p.name: sorted(m for m in fgbg_imports(p) if m.split(".")[1:2] and m.split(".")[1] in HIGHER_FLOORS)
              for p in STORE.glob("*.py")}  # fmt: skip
    assert "fgbg.store.plan" in fgbg_imports(STORE / "read.py")  # the parser sees the imports
    assert {name: c for name, c in climbs.items() if c} == {}


def test_no_module_of_fgbg_store_is_in_an_import_circle():
    def siblings(path: Path) -> set[str]:
        return {m.split(".")[2] for m in fgbg_imports(path) if m.startswith("fgbg.store.")} - {path.stem}

    graph = {p.stem: siblings(p) for p in STORE.glob("*.py") if p.stem != "__init__"}
    assert "lock" in graph["layout"]  # the layout reads the lock, the lock needs nothing of the layout
    assert cycle(graph) is None, " -> ".join(cycle(graph))
