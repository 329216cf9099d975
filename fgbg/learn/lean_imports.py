"""Import only what a run uses: torchmetrics, imported by Lightning and by :mod:`fgbg.learn.metrics`,
imports transformers (for BERTScore) and scipy.signal (audio metrics) wherever they are installed,
about 1.5 s of a 4.4 s start-up on 2 cores. fgbg uses neither; while torchmetrics' own modules run,
those two count as not installed, so torchmetrics leaves them out (its conditional imports all ask
lightning_utilities: RequirementCache, package_available). In such a process torchmetrics' BERTScore
and audio metrics say that they need those packages, so only a process fgbg owns may install it.

Installed by the command line (:func:`fgbg.cli.own_the_process`) for the verbs that train or
evaluate, before they import Lightning; Lightning's DDP children run that command line again
(its ``popen`` launcher) and install it the same way. Importing fgbg, fgbg.learn or any of its
modules does not. Costs nothing until torchmetrics is imported, and does nothing where it already is.
"""

from __future__ import annotations

import importlib.abc
import re
import sys

UNUSED = frozenset({"transformers", "scipy"})  # distributions torchmetrics need not import for fgbg


class _TorchmetricsFinder(importlib.abc.MetaPathFinder):
    """Finds torchmetrics as the other finders do, with a loader that runs it with UNUSED hidden; once."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchmetrics":
            return None
        uninstall()
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HidingLoader(spec.loader)
                return spec
        return None


class _HidingLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        from lightning_utilities.core import imports

        original_check, original_available = imports.RequirementCache._check_requirement, imports.package_available

        def check(cache) -> None:
            original_check(cache)
            if distribution(cache.requirement) in UNUSED:
                cache.available = False
                cache.message = f"{cache.requirement!r}: not imported by fgbg (fgbg.learn.lean_imports)"

        def available(name: str) -> bool:  # torchmetrics/__init__ asks this one for scipy
            return name not in UNUSED and original_available(name)

        imports.RequirementCache._check_requirement, imports.package_available = check, available
        try:
            self.loader.exec_module(module)
        finally:
            imports.RequirementCache._check_requirement, imports.package_available = original_check, original_available

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self.loader, name)


def distribution(requirement: str | None) -> str:
    """The distribution a requirement names: "transformers>=4.4.0" -> "transformers"."""
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement or "")
    return match.group(0).lower() if match else ""


def install() -> None:
    """Hide UNUSED from torchmetrics when it is first imported (nothing if it already is, or already installed)."""
    if "torchmetrics" not in sys.modules and not any(isinstance(f, _TorchmetricsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchmetricsFinder())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchmetricsFinder)]
