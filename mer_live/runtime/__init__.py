"""The runtime on ONNX Runtime: bundles, sessions, the incremental front end, the engine ``Model``, the live
``Stream``, running statistics and results. Never imports torch (``tests/test_layout.py`` checks it).
"""
