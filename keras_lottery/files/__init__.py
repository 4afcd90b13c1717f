"""What is written to disk: atomic, checksummed file I/O, IMP checkpoints, tickets."""
