"""Convert the musicnn package's TensorFlow checkpoints to safetensors, once, with golden outputs.

Runs in its own environment (TensorFlow is never a mer-live dependency), which
`scripts/convert_musicnn.sh` creates and uses:

    scripts/convert_musicnn.sh [--real-clips DIR]

For each of MSD_musicnn, MTT_musicnn, MSD_vgg and MTT_vgg it reads the checkpoint out of the
installed ``musicnn`` wheel, renames and transposes every variable to mer-live's PyTorch layout
(``mer_live/nn/musicnn.py``) and writes ``mer_live/models/pretrained/<name>.safetensors`` beside the
package's ISC notice. It then builds the original graph with the package's own ``models.py``
(``is_training=False``), runs it on a few generated clips through mer-live's NumPy log-mel
reference and stores the outputs in ``tests/golden/musicnn.npz``: the test suite checks the
PyTorch port and its ONNX export against them without TensorFlow. With ``--real-clips`` it
stores the same for the first segments of a few real files (``tests/golden/musicnn_real.npz``,
outputs only, keyed by file name) and reports how far the package's own float16 preprocessing
moves the tags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the torch-free modules of mer_live: config, mel, audio

from mer_live.config import MUSICNN_AUDIO  # noqa: E402
from mer_live.nn.mel import log_mel_reference  # noqa: E402

OUT = ROOT / "mer_live" / "models" / "pretrained"
GOLDEN = ROOT / "tests" / "golden"
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
SEED = 20191104


def conv2d(kernel: np.ndarray) -> np.ndarray:
    """TF HWIO -> torch OIHW."""
    return kernel.transpose(3, 2, 0, 1)


def conv1d(kernel: np.ndarray) -> np.ndarray:
    """TF [k, width, 1, out] applied across the whole width -> torch Conv1d [out, width, k]."""
    return kernel[:, :, 0, :].transpose(2, 1, 0)


def batch_norm(reader, tf_name: str, torch_name: str) -> dict[str, np.ndarray]:
    return {
        f"{torch_name}.weight": reader.get_tensor(f"{tf_name}/gamma"),
        f"{torch_name}.bias": reader.get_tensor(f"{tf_name}/beta"),
        f"{torch_name}.running_mean": reader.get_tensor(f"{tf_name}/moving_mean"),
        f"{torch_name}.running_var": reader.get_tensor(f"{tf_name}/moving_variance"),
        f"{torch_name}.num_batches_tracked": np.zeros((), np.int64),
    }


def musicnn_state(reader) -> dict[str, np.ndarray]:
    """Variables in the order models.py creates them: conv2d, conv2d_1, ...; batch_normalization, _1, ..."""
    t = reader.get_tensor
    state = batch_norm(reader, "batch_normalization", "body.input_bn")
    convs = [("body.timbral.0", "body.timbral_bn.0"), ("body.timbral.1", "body.timbral_bn.1"),
             ("body.temporal.0", "body.temporal_bn.0"), ("body.temporal.1", "body.temporal_bn.1"),
             ("body.temporal.2", "body.temporal_bn.2"), ("body.midend.0", "body.midend_bn.0"),
             ("body.midend.1", "body.midend_bn.1"), ("body.midend.2", "body.midend_bn.2")]
    for i, (conv, norm) in enumerate(convs):
        tf_conv = "conv2d" if i == 0 else f"conv2d_{i}"
        kernel = t(f"{tf_conv}/kernel")
        state[f"{conv}.weight"] = conv1d(kernel) if "midend" in conv else conv2d(kernel)
        state[f"{conv}.bias"] = t(f"{tf_conv}/bias")
        state.update(batch_norm(reader, f"batch_normalization_{i + 1}", norm))
    state.update(batch_norm(reader, "batch_normalization_9", "head.pool_bn"))
    state["head.dense.weight"], state["head.dense.bias"] = t("dense/kernel").T, t("dense/bias")
    state.update(batch_norm(reader, "batch_normalization_10", "head.dense_bn"))
    state["head.tags.weight"], state["head.tags.bias"] = t("dense_1/kernel").T, t("dense_1/bias")
    return state


def vgg_state(reader) -> dict[str, np.ndarray]:
    t = reader.get_tensor
    state = batch_norm(reader, "batch_normalization", "body.input_bn")
    for i in range(5):
        state[f"body.convs.{i}.weight"] = conv2d(t(f"{i + 1}CNN/kernel"))
        state[f"body.convs.{i}.bias"] = t(f"{i + 1}CNN/bias")
        state.update(batch_norm(reader, f"batch_normalization_{i + 1}", f"body.bns.{i}"))
    state["head.tags.weight"], state["head.tags.bias"] = t("dense/kernel").T, t("dense/bias")
    return state


def generated_clips() -> np.ndarray:
    """Three one-segment clips: a bright major chord, a low minor chord with noise, clicks over a drone."""
    rng = np.random.default_rng(SEED)
    sr, n = MUSICNN_AUDIO.sample_rate, MUSICNN_AUDIO.segment_samples
    t = np.arange(n) / sr
    major = sum(np.sin(2 * np.pi * f * t) for f in (523.25, 659.25, 783.99)) * 0.2
    minor = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 130.81, 164.81)) * 0.25 + 0.05 * rng.standard_normal(n)
    clicks = np.zeros(n)
    clicks[:: sr // 4] = 0.9
    drone = 0.3 * np.sin(2 * np.pi * 220.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t)) + clicks
    return np.stack([major, minor, drone]).clip(-1, 1).astype(np.float32)


class Original:
    """The package's own graph (models.py) with its checkpoint restored, in inference mode."""

    def __init__(self, name: str, frames: int) -> None:
        import tensorflow as tf
        from musicnn import configuration, models

        tf.compat.v1.disable_eager_execution()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = tf.compat.v1.placeholder(tf.float32, [None, frames, configuration.N_MELS])
            with tf.name_scope("model"):
                out = models.define_model(self.x, False, name, 50)
            self.outputs = {"tags": tf.nn.sigmoid(out[0])}
            if "vgg" in name:
                self.outputs["pool5"] = out[5]
            else:
                self.outputs["penultimate"] = out[8]
                self.outputs["pooled"] = tf.reshape(tf.stack([out[7], out[6]], axis=2), [-1, 2 * out[6].shape[1]])
            self.session = tf.compat.v1.Session(graph=self.graph)
            tf.compat.v1.train.Saver().restore(self.session, checkpoint_dir(name))

    def __call__(self, compressed: np.ndarray) -> dict[str, np.ndarray]:
        """(batch, frames, 96) log10(1 + 10000 mel) -> named outputs."""
        return self.session.run(self.outputs, {self.x: compressed.astype(np.float32)})


def checkpoint_dir(name: str) -> str:
    import musicnn

    return os.path.join(os.path.dirname(musicnn.__file__), name) + "/"


def compressed_segments(audio: np.ndarray) -> np.ndarray:
    """mer-live's front end (NumPy reference, float64) on each segment, then musicnn's compression."""
    frames = MUSICNN_AUDIO.segment_frames
    mels = [np.log10(1 + 10000 * np.exp(log_mel_reference(a, MUSICNN_AUDIO)))[:, :frames].T for a in audio]
    return np.stack(mels)


def convert() -> dict[str, dict]:
    import tensorflow as tf
    from safetensors.numpy import save_file

    OUT.mkdir(parents=True, exist_ok=True)
    record = {}
    for name in MODELS:
        reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_dir(name))
        state = vgg_state(reader) if "vgg" in name else musicnn_state(reader)
        state = {k: np.ascontiguousarray(v.astype(np.float32) if v.dtype != np.int64 else v) for k, v in state.items()}
        save_file(state, str(OUT / f"{name}.safetensors"),
                  metadata={"source": f"musicnn 0.1.0 wheel, {name}/ checkpoint", "licence": "ISC, see NOTICE"})
        record[name] = {"tensors": len(state), "parameters": int(sum(v.size for v in state.values()))}
        print(f"{name}: {len(state)} tensors, {record[name]['parameters']} values -> {OUT / (name + '.safetensors')}")
    return record


def write_notice() -> None:
    import musicnn

    licence = Path(musicnn.__file__).parent.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md"
    (OUT / "NOTICE").write_text(
        "The weights in this folder are the pretrained musicnn models (MSD_musicnn, MTT_musicnn, MSD_vgg,\n"
        "MTT_vgg) of the musicnn package 0.1.0 (https://github.com/jordipons/musicnn; Pons and Serra,\n"
        "'musicnn: pre-trained convolutional neural networks for music audio tagging', ISMIR 2019 LBD),\n"
        "converted from its TensorFlow checkpoints by scripts/convert_musicnn.py without changing any value.\n"
        "MSD models: trained on the Million Song Dataset; MTT models: on MagnaTagATune.\n\n"
        "The musicnn package's licence (ISC):\n\n" + licence.read_text()
    )


def golden() -> None:
    audio = generated_clips()
    x = compressed_segments(audio)
    arrays = {"audio": audio}
    for name in MODELS:
        for key, value in Original(name, x.shape[1])(x).items():
            arrays[f"{name}/{key}"] = value.astype(np.float32)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN / "musicnn.npz", **arrays)
    print(f"golden outputs of the original graphs on {len(audio)} generated clips -> {GOLDEN / 'musicnn.npz'}")


def real_clips(folder: Path, count: int) -> None:
    """TF outputs for the first segment of ``count`` real files (outputs only), and the float16 effect."""
    import librosa

    from mer_live.audio.read import load_audio

    files = sorted(p for p in folder.rglob("*.mp3"))[:: max(1, len(list(folder.rglob("*.mp3"))) // count)][:count]
    segments = np.stack([load_audio(f, MUSICNN_AUDIO.sample_rate)[: MUSICNN_AUDIO.segment_samples] for f in files])
    x = compressed_segments(segments)
    arrays = {"files": np.array([f.name for f in files])}
    report = {}
    for name in MODELS:
        original = Original(name, x.shape[1])
        for key, value in original(x).items():
            arrays[f"{name}/{key}"] = value.astype(np.float32)
        # the package's own preprocessing: librosa (centered frames) and float16 before the log
        mel = np.stack([librosa.feature.melspectrogram(y=s, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
                        for s in segments])[:, 1 : 1 + x.shape[1]]  # centering adds one frame in front
        f32 = original(np.log10(10000 * mel.astype(np.float32) + 1))["tags"]
        f16 = original(np.log10(10000 * mel.astype(np.float16) + 1).astype(np.float32))["tags"]
        report[name] = {
            "librosa_float32_vs_ours_tags_max_abs": float(np.abs(f32 - arrays[f"{name}/tags"]).max()),
            "package_float16_vs_float32_tags_max_abs": float(np.nan_to_num(np.abs(f16 - f32), nan=1.0).max()),
        }
    np.savez_compressed(GOLDEN / "musicnn_real.npz", **arrays)
    (GOLDEN / "musicnn_real.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-clips", type=Path, help="folder of real MP3s for the real-clip parity record")
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    convert()
    write_notice()
    golden()
    if args.real_clips:
        real_clips(args.real_clips, args.count)


if __name__ == "__main__":
    main()
