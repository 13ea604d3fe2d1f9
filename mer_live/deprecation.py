"""Old names keep working for one release and say what replaces them."""

from __future__ import annotations

import warnings


def deprecated(old: str, new: str) -> None:
    """Warn (``DeprecationWarning``, pointing at the caller's caller) that ``old`` is going: use ``new``."""
    warnings.warn(f"{old} is deprecated and goes in the next release; use {new}", DeprecationWarning, stacklevel=3)
