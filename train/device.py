"""Choosing the torch device (--device auto|cpu|cuda) and its CPU threads (--threads)."""

from __future__ import annotations

import torch

from tilegen.threads import pick_threads


def pick_device(name: str) -> torch.device:
    """'auto' takes CUDA when torch sees a GPU, else the CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA GPU: use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown --device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def use_threads(requested: int | None = None) -> int:
    """Give torch `requested` CPU threads, or as many as there are idle cores (see
    tilegen/threads.py for why that beats torch's default); returns the number set."""
    n = pick_threads(requested)
    torch.set_num_threads(n)
    return n
