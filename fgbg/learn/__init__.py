"""The mask + depth network: data, model, losses, metrics, train, evaluate, predict, export.

Importing it changes nothing outside fgbg: the import hook that keeps transformers and scipy out of
torchmetrics (:mod:`fgbg.learn.lean_imports`) is installed only by the command line, whose process
fgbg owns (``fgbg train``, ``evaluate``, ``demo``, and Lightning's DDP children, which run the same
command line again).
"""
