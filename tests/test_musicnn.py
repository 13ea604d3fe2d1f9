"""The PyTorch port of musicnn and its VGG against the original TensorFlow graphs' stored outputs.

``tests/golden/musicnn.npz`` holds three generated clips and what the package's own graphs
(models.py, its checkpoints, inference mode) output for them, written by
scripts/convert_musicnn.py; ``musicnn_real.npz`` the same for the first 3 s of four real 4Q
clips (outputs only). No TensorFlow is needed here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mer_live.audio.read import load_audio
from mer_live.config import MUSICNN_AUDIO
from mer_live.nn.frontend import LogMel
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.nn.musicnn import MusicnnBody, Tagger, weights_path
from mer_live.nn.names import PRETRAINED

GOLDEN = Path(__file__).parent / "golden"
TOLERANCE = 1e-4


class TaggerGraph(torch.nn.Module):
    """Raw audio -> (tags, penultimate): the whole port in one graph, for the ONNX check."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.frontend = LogMel(MUSICNN_AUDIO)
        self.tagger = Tagger(name)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tagger(self.frontend(audio))


def onnx_outputs(module: torch.nn.Module, audio: np.ndarray) -> list[np.ndarray]:
    graph = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.from_numpy(audio[:2]),), graph, input_names=["audio"],
                      output_names=["tags", "penultimate"], dynamic_axes={"audio": {0: "batch"}},
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(graph.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {"audio": audio})


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """Max absolute difference relative to the reference's largest magnitude (features reach 10s)."""
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("name", list(PRETRAINED))
def test_port_reproduces_the_original_graph(name: str):
    golden = np.load(GOLDEN / "musicnn.npz")
    folder = PRETRAINED[name][0]
    tagger = Tagger(name)
    with torch.no_grad():
        logmel = LogMel(MUSICNN_AUDIO)(torch.from_numpy(golden["audio"]))
        tags, penultimate = tagger(logmel)
        assert np.abs(tags.numpy() - golden[f"{folder}/tags"]).max() < TOLERANCE
        if name.startswith("musicnn"):
            assert relative(penultimate.numpy(), golden[f"{folder}/penultimate"]) < TOLERANCE
            assert relative(tagger.body(logmel).numpy(), golden[f"{folder}/pooled"]) < TOLERANCE
        else:
            pool5 = tagger.body.pool5(logmel).permute(0, 2, 3, 1).numpy()
            assert relative(pool5, golden[f"{folder}/pool5"]) < TOLERANCE
    # the tags differ between clips: a port that ignored its input would fail here
    assert np.abs(golden[f"{folder}/tags"][0] - golden[f"{folder}/tags"][1]).max() > 0.05


@pytest.mark.parametrize("name", ["musicnn-msd", "vgg-mtt"])
def test_onnx_export_of_the_port_reproduces_the_original(name: str):
    golden = np.load(GOLDEN / "musicnn.npz")
    tags, _ = onnx_outputs(TaggerGraph(name), golden["audio"])
    assert np.abs(tags - golden[f"{PRETRAINED[name][0]}/tags"]).max() < TOLERANCE


def test_port_reproduces_the_original_on_real_music(fourq: Path):
    stored = np.load(GOLDEN / "musicnn_real.npz")
    paths = {p.name: p for p in fourq.rglob("*.mp3")}
    missing = [f for f in stored["files"] if f not in paths]
    if missing:
        pytest.skip(f"4Q clips {missing} not in {fourq}")
    audio = np.stack([load_audio(paths[f], MUSICNN_AUDIO.sample_rate)[: MUSICNN_AUDIO.segment_samples]
                      for f in stored["files"]])
    for name, (folder, _) in PRETRAINED.items():
        with torch.no_grad():
            tags, _ = Tagger(name)(LogMel(MUSICNN_AUDIO)(torch.from_numpy(audio)))
        assert np.abs(tags.numpy() - stored[f"{folder}/tags"]).max() < TOLERANCE, name
    onnx_tags, onnx_penultimate = onnx_outputs(TaggerGraph("musicnn-msd"), audio)
    assert np.abs(onnx_tags - stored["MSD_musicnn/tags"]).max() < TOLERANCE
    assert relative(onnx_penultimate, stored["MSD_musicnn/penultimate"]) < TOLERANCE


def test_weights_ship_with_the_isc_notice():
    notice = (weights_path("musicnn-msd").parent / "NOTICE").read_text()
    assert "ISC" in notice and "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019" in notice
    for name in PRETRAINED:
        assert weights_path(name).stat().st_size > 1_000_000


def test_segment_loudness_makes_the_body_gain_proof():
    golden = np.load(GOLDEN / "musicnn.npz")
    audio = torch.from_numpy(golden["audio"])
    logmel = LogMel(MUSICNN_AUDIO)
    quiet = 10 ** (-10 / 20)
    outputs = {}
    for loudness in ("none", "segment"):
        body = MusicnnBody(loudness).eval()
        with torch.no_grad():
            outputs[loudness] = [body(logmel(audio)).numpy(), body(logmel(audio * quiet)).numpy()]
    assert relative(*outputs["segment"]) < 1e-4
    assert relative(*outputs["none"]) > 1e-2  # without it, -10 dB really moves the features


def test_pretrained_segment_net_takes_only_musicnn_front_end():
    with pytest.raises(ValueError, match="sample_rate"):
        SegmentNet(MUSICNN_AUDIO.replace(sample_rate=22050, fmax=11025.0), ModelConfig(arch="musicnn-msd"))
    net = SegmentNet(MUSICNN_AUDIO, ModelConfig(arch="musicnn-msd", finetune="heads"))
    trainable = {n for n, p in net.trainable.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)  # body and tagging back end frozen
    tuned = SegmentNet(MUSICNN_AUDIO, ModelConfig(arch="musicnn-msd", finetune="top"))
    assert any(n.startswith("backend.") for n, p in tuned.trainable.named_parameters() if p.requires_grad)


def test_midend_fine_tuning_trains_mid_end_and_back_end_on_front_end_maps():
    """``finetune="mid"``: the trainable part reads the frozen front end's maps and gives the whole network's
    logits; the mid-end and back end learn at the body's rate, the front end not at all."""
    from mer_live.train.settings import TrainConfig
    from mer_live.train.sssl import param_groups

    with pytest.raises(ValueError, match="mid-end"):
        ModelConfig(arch="vgg-msd", finetune="mid")
    net = SegmentNet(MUSICNN_AUDIO, ModelConfig(arch="musicnn-msd", finetune="mid")).eval()
    named = dict(net.trainable.named_parameters())
    learning = {n for n, p in named.items() if p.requires_grad}
    assert {n.split(".")[1] for n in learning if n.startswith("body.")} == {"midend", "midend_bn"}
    assert any(n.startswith("top.backend.") for n in learning) and any(n.startswith("top.head.") for n in learning)
    assert set(net.state_dict()) == set(SegmentNet(MUSICNN_AUDIO, ModelConfig(arch="musicnn-msd")).state_dict())
    groups = param_groups(net.trainable, TrainConfig(lr=1e-3, backbone_lr_scale=0.1))
    slow = {id(p) for p in groups[1]["params"]}
    assert groups[1]["lr"] == pytest.approx(1e-4)
    assert {n for n, p in named.items() if id(p) in slow} == {n for n in learning if not n.startswith("top.head.")}
    logmel = torch.randn(2, 96, 188) - 4.0
    with torch.no_grad():
        whole = net.backbone(logmel)
        from_maps = net.trainable(net.backbone.body.front(logmel))
    assert torch.allclose(whole, from_maps, atol=1e-5)
