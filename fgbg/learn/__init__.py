"""The mask + depth network: data, model, losses, metrics, train, evaluate, predict, export."""
