"""Realtime: streams, windows, ONNX Runtime inference, running statistics, dashboard, labeling."""
