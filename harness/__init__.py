"""Test and benchmark harnesses (tiny trained bundles, a local Ray cluster): used by ``tests/`` and
``benchmarks/``, not shipped in the wheel."""
