"""The mask + depth network: data, model, losses, metrics, train, evaluate, predict, export."""

from fgbg.learn.lean_imports import install as _lean_imports

_lean_imports()  # torchmetrics, when imported, leaves out transformers and scipy.signal (see fgbg.learn.lean_imports)
