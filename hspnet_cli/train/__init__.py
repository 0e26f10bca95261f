"""Training: data loading, optimisation, checkpoints and the epoch loop."""
