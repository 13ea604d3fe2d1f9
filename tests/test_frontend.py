import numpy as np
import pytest
import torch

from mer_live.audio.read import load_audio
from mer_live.config import AudioConfig
from mer_live.nn.frontend import LogMel
from mer_live.nn.mel import log_mel_reference, mel_filterbank

CONFIG = AudioConfig()


def _logmel(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return LogMel(CONFIG)(torch.from_numpy(x)[None])[0].numpy()


def test_filterbank_is_slaney_and_has_no_empty_filters():
    fb = mel_filterbank(CONFIG)
    assert fb.shape == (CONFIG.n_mels, CONFIG.n_freqs)
    assert (fb.sum(axis=1) > 0).all()


def _assert_matches_reference(x: np.ndarray) -> None:
    # log-domain absolute error == relative error of the mel power
    ours, ref = _logmel(x), log_mel_reference(x, CONFIG)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4


def test_matches_numpy_reference_on_noise():
    _assert_matches_reference(np.random.default_rng(1).uniform(-1, 1, 22050 * 4).astype(np.float32))


def test_matches_numpy_reference_on_real_music(music_clip):
    _assert_matches_reference(load_audio(music_clip, CONFIG.sample_rate))


def test_slicing_clip_logmel_equals_segment_logmel():
    x = np.random.default_rng(2).standard_normal(CONFIG.sample_rate * 8).astype(np.float32) * 0.1
    clip = _logmel(x)
    for k in (0, 1, 3):
        start = k * CONFIG.hop_samples
        seg = _logmel(x[start : start + CONFIG.segment_samples].copy())
        assert np.array_equal(seg, clip[:, k * CONFIG.hop_frames : k * CONFIG.hop_frames + CONFIG.segment_frames])


def test_onnx_export_dynamic_batch_and_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(LogMel(CONFIG), torch.zeros(2, CONFIG.segment_samples), str(path), dynamo=False,
                      opset_version=17, input_names=["audio"], output_names=["logmel"],
                      dynamic_axes={"audio": {0: "batch", 1: "samples"}, "logmel": {0: "batch", 2: "frames"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, seconds in ((1, 2.0), (3, 5.0)):
        x = np.random.default_rng(batch).uniform(-1, 1, (batch, int(seconds * 22050))).astype(np.float32)
        with torch.no_grad():
            expected = LogMel(CONFIG)(torch.from_numpy(x)).numpy()
        got = session.run(None, {"audio": x})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4


CASES = [(1024, 300, 1024), (2048, 441, 1500), (512, 160, 400), (1536, 512, 1536), (675, 225, 675)]


@pytest.mark.parametrize(("n_fft", "hop", "win"), CASES)
def test_other_ffts_hops_and_windows_match_the_reference(n_fft: int, hop: int, win: int):
    """Hops that are not whole rows of the first stage (gathered in smaller runs), a window shorter than n_fft
    (rows left out), an n_fft whose factors differ (1536 = 32 x 48) and an odd Q (675 = 25 x 27: only c = 0
    is its own conjugate partner)."""
    config = AudioConfig(n_fft=n_fft, hop_length=hop, win_length=win)
    x = np.random.default_rng(n_fft + hop).uniform(-1, 1, 22050 * 2).astype(np.float32)
    with torch.no_grad():
        ours = LogMel(config)(torch.from_numpy(x)[None])[0].numpy()
    ref = log_mel_reference(x, config)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4
