"""mer-live: streaming, real-time music emotion recognition (SSSL, arXiv 2410.21897)."""

__version__ = "0.1.0"
