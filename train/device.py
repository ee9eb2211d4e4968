"""Choosing the torch device from --device auto|cpu|cuda."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """'auto' takes CUDA when torch sees a GPU, else the CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA GPU: use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown --device {name!r}: use auto, cpu or cuda")
    return torch.device(name)
