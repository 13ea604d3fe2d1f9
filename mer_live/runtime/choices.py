"""The names the runtime's options take, in one module that imports nothing, so ``--help`` stays instant."""

PROVIDERS = ("auto", "cpu", "cuda")  # where the model runs (ONNX Runtime provider)
AGGREGATORS = ("onnx", "pickle")  # the song-level model: the bundle's ONNX graph or its scikit-learn pickle
MODES = ("incremental", "full")  # a stream's segment path: frames computed once, or the one-graph reference
