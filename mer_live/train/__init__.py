"""Training: datasets, the SSSL loop, song-level aggregation and cross-validated evaluation."""
