"""Making a store: assets -> compose (pure numpy) -> render -> generate, over the store's plan (fgbg.store.plan); and cut-outs."""
