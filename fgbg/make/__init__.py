"""Making a store: assets -> plan -> compose (pure numpy) -> render -> generate; and cut-outs."""
