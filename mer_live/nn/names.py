"""Model names and choices, torch-free: the CLIs list them without importing the models."""

from __future__ import annotations

# pretrained on music tagging -> (checkpoint folder in the musicnn wheel, architecture)
PRETRAINED = {
    "musicnn-msd": ("MSD_musicnn", "musicnn"),
    "musicnn-mtt": ("MTT_musicnn", "musicnn"),
    "vgg-msd": ("MSD_vgg", "vgg"),
    "vgg-mtt": ("MTT_vgg", "vgg"),
}
# pretrained on AudioSet (EfficientAT's MobileNets) -> converted checkpoint; fine-tuned end to end on log-mel
AUDIOSET = {"mn04": "mn04_as"}
FROM_SCRATCH = ("compact", "vgg16")
ARCH_CHOICES = (*PRETRAINED, *AUDIOSET, *FROM_SCRATCH)
# pretrained: train our heads only, also the tagging back end (musicnn, lower rate), also musicnn's mid-end
# (its front end frozen), or the whole network (AudioSet MobileNet: the body at --backbone-lr-scale of the heads' rate)
FINETUNE = ("heads", "top", "mid", "full")
# "none" feeds the level as it comes; "segment" scales each segment's mel power to one reference
# level first, so an input gain changes nothing (a microphone's gain is arbitrary)
LOUDNESS = ("none", "segment")
