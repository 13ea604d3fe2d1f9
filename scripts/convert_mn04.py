"""Convert EfficientAT's ``mn04_as`` checkpoint (a PyTorch state dict) into the package, once.

Usage: python scripts/convert_mn04.py CHECKPOINT.pt LICENSE-EfficientAT

Writes ``mer_live/models/pretrained/mn04_as.safetensors`` (every tensor as it is, float32; no pickle
at load time) and ``NOTICE-EfficientAT`` (the MIT licence, with where the weights came from), and
prints the file's SHA-256 for the manifest's provenance record.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from safetensors.numpy import save_file

from mer_live.nn.mobilenet import NOTICE, WEIGHTS, MobileNet

SOURCE = ("mn04_as_mAP_432.pt, EfficientAT (Schmid, Koutini, Widmer, 'Efficient Large-Scale Audio Tagging via "
          "Transformer-to-CNN Knowledge Distillation', ICASSP 2023), github.com/fschmid56/EfficientAT release v0.0.1")


def main(checkpoint: str, licence: str) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    MobileNet().load_state_dict(state)  # every key and shape as the port expects
    save_file({k: v.contiguous().numpy() for k, v in state.items()}, str(WEIGHTS))
    WEIGHTS.chmod(0o644)
    source = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    notice = (f"The file mn04_as.safetensors holds the weights of {SOURCE}, converted by scripts/convert_mn04.py "
              f"without changing any value (source SHA-256 {source}).\n"
              f"Models fine-tuned from them carry this notice.\n\n{Path(licence).read_text()}")
    (WEIGHTS.parent / NOTICE).write_text(notice)
    print(f"{WEIGHTS} sha256 {hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
