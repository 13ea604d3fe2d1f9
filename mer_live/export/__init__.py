"""Export: a training run to a verified, hashed model bundle."""
