"""NumPy-only mask math: masks and budgets, pruning scores to masks, structures (neurons, channels, N:M), per-round decisions."""
