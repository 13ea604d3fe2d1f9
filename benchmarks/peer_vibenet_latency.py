"""A peer's per-update compute: vibenet re-run on the last window of a live stream.

vibenet labels a whole clip at once (its log-mel, then an EfficientNet with global pooling), so the live
equivalent of one update is vibenet on the newest window: its own front end (``extract_mel``) and its ONNX
graph, in a session with the thread count asked for (vibenet's own session takes every core). Runs in the
peers' venv (``benchmarks/peers.py``); prints one JSON object of per-update times in ms per thread count.
"""

from __future__ import annotations

import argparse
import importlib.resources as resources
import json
import time

import numpy as np
import onnxruntime as ort
from vibenet.core import SAMPLE_RATE, extract_mel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t = np.arange(int((args.seconds + args.repeats + args.warmup) * SAMPLE_RATE)) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    window = int(args.seconds * SAMPLE_RATE)
    out = {}
    with resources.as_file(resources.files("vibenet.artifacts") / "efficientnet_model.onnx") as path:
        for threads in (int(k) for k in args.threads.split(",")):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            times = []
            for i in range(args.warmup + args.repeats):  # one update a second: the newest window
                start = (i + 1) * SAMPLE_RATE
                t0 = time.perf_counter()
                mel = extract_mel(audio[start : start + window], SAMPLE_RATE)
                session.run(None, {"x": mel[np.newaxis, :]})
                if i >= args.warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
            out[str(threads)] = times
    print(json.dumps(out))


if __name__ == "__main__":
    main()
