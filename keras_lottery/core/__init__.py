"""Making weights prunable: wrap and strip, the per-weight state (mask, θ0, θk), the mask constraint, the registry, rewinding, the sparsity report."""
