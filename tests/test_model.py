import numpy as np
import pytest
import torch

from mer_live.config import AudioConfig
from mer_live.nn.model import ModelConfig, SegmentNet, SegmentProbabilities, count_macs, count_parameters


def test_vgg16_has_13_convs_and_five_pools():
    net = SegmentNet(AudioConfig(), ModelConfig(arch="vgg16"))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 13 and len(pools) == 5
    assert [c.out_channels for c in convs][-1] == 512 and convs[0].in_channels == 1


@pytest.mark.parametrize("seconds", [1.0, 3.0, 5.0])
def test_compact_forward_all_segment_lengths(seconds):
    audio = AudioConfig(segment_seconds=seconds)
    net = SegmentNet(audio, ModelConfig(arch="compact")).eval()
    logits = net(torch.zeros(2, audio.segment_samples))
    assert logits.shape == (2, 4)
    assert set(net.split(logits)) == {"valence", "arousal"}


def test_quadrant_head_option():
    net = SegmentNet(AudioConfig(), ModelConfig(tasks={"valence": 2, "arousal": 2, "quadrant": 4})).eval()
    assert net(torch.zeros(1, AudioConfig().segment_samples)).shape == (1, 8)


def test_compact_is_much_cheaper_than_vgg16():
    a = AudioConfig()
    compact, vgg = SegmentNet(a, ModelConfig("compact")), SegmentNet(a, ModelConfig("vgg16"))
    assert count_parameters(compact) * 20 < count_parameters(vgg)
    assert count_macs(compact) * 10 < count_macs(vgg)


def test_a_pretrained_view_counts_as_a_second_network_in_the_macs():
    """Labeling runs the view beside the network: its MACs are the network's again, less the heads."""
    plain = ModelConfig(arch="mn04", finetune="full")
    audio = plain.default_audio()
    one, two = (SegmentNet(audio, config) for config in (plain, ModelConfig(arch="mn04", finetune="full", view=True)))
    network = count_macs(one) - one.frontend.macs(audio.segment_frames)
    heads = sum(m.in_features * m.out_features for m in one.backbone.head.modules() if isinstance(m, torch.nn.Linear))
    assert network > 10**7 and count_macs(two) == count_macs(one) + network - heads


def test_segment_model_exports_and_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    a = AudioConfig()
    net = SegmentProbabilities(SegmentNet(a, ModelConfig()).eval(), {"valence": 2, "arousal": 2}).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, torch.zeros(2, a.segment_samples), str(path), dynamo=False, opset_version=17,
                      input_names=["audio"], output_names=["probs"],
                      dynamic_axes={"audio": {0: "batch"}, "probs": {0: "batch"}})
    x = np.random.default_rng(0).uniform(-1, 1, (5, a.segment_samples)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"audio": x})[0]
    assert np.abs(got - expected).max() < 1e-4
