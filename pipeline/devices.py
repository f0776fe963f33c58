"""Where tensors live. Execution choice, not a hyper-parameter: never part of a config hash."""

from __future__ import annotations

import torch

from pipeline.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else CPU; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible here; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device {name!r}: choose auto, cpu or cuda[:N]")


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG `torch.random.fork_rng` must fork for code running on `device`."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []
