"""Audio in: decoding (libsndfile, PyAV), downmixing and resampling, library scans, manifests of paths.

No torch and no ONNX Runtime: training, the runtime and labeling all read audio through here.
"""
