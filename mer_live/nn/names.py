"""Model names and choices, torch-free: the CLIs list them without importing the models."""

from __future__ import annotations

# pretrained on music tagging -> (checkpoint folder in the musicnn wheel, architecture)
PRETRAINED = {
    "musicnn-msd": ("MSD_musicnn", "musicnn"),
    "musicnn-mtt": ("MTT_musicnn", "musicnn"),
    "vgg-msd": ("MSD_vgg", "vgg"),
    "vgg-mtt": ("MTT_vgg", "vgg"),
}
FROM_SCRATCH = ("compact", "vgg16")
ARCH_CHOICES = (*PRETRAINED, *FROM_SCRATCH)
FINETUNE = ("heads", "top")  # pretrained: train our heads only, or also the tagging back end (lower rate)
# "none" feeds the level as it comes; "segment" scales each segment's mel power to one reference
# level first, so an input gain changes nothing (a microphone's gain is arbitrary)
LOUDNESS = ("none", "segment")
