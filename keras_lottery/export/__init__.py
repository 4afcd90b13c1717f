"""Tickets out: SavedModel and TFLite export, compaction, TFLite CSR and tensors, the XNNPACK sparse-path check, N:M pattern checks."""
