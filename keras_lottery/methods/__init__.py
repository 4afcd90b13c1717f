"""Methods beside IMP: pruning at initialization, one-shot pruning, dynamic sparse training, Early-Bird tickets, linear-mode-connectivity instability."""
