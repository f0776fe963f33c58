"""Typed run configs. One per run, saved with every checkpoint and in results.

Defaults sit next to their meaning. `from_dict` rejects unknown keys so a typo in a
shipped config fails at start-up, not silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline.errors import UserError


def _from_dict(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    cfg = cls(**data)
    # YAML/JSON give untyped values: check them against the dataclass defaults' types.
    for f in fields(cls):
        value, default = getattr(cfg, f.name), getattr(cls(), f.name)
        ok = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
        if not ok or isinstance(value, bool) != isinstance(default, bool):
            raise UserError(f"{where}: {f.name} should be {type(default).__name__}, got {value!r}")
    return cfg


@dataclass
class TrainConfig:
    """How the original model (and the retrain oracle) is trained: to memorisation.

    The field trains its originals to ~100 % train accuracy (ResNet-18 on CIFAR-10), so
    the forget set leaves a mark to remove. No weight decay for that reason.
    """

    arch: str = "cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 16
    batch_size: int = 128
    lr: float = 0.05  # peak of the one-cycle schedule (SGD, momentum 0.9)
    weight_decay: float = 0.0
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train config") -> "TrainConfig":
        return _from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UnlearnConfig:
    """One unlearning run: the loop's schedule plus the method's own flat kwargs.

    Each epoch walks the forget set once in batches of `forget_batch`, pairing every
    forget batch with the next batch of a cycling retain stream. Methods that only use
    retain data (finetune, l1_sparse) still take the same number of steps.
    """

    method: str = "lur"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 2
    lr: float = 0.01
    optimizer: str = "sgd"  # sgd (momentum 0.9) or adam
    weight_decay: float = 0.0
    forget_batch: int = 128
    retain_batch: int = 128
    seed: int = 0
    conflict_every: int = 5  # log cos(grad L_u, grad L_r) every N steps (telemetry; not timed)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "unlearn config") -> "UnlearnConfig":
        cfg = _from_dict(cls, data, where)
        if cfg.optimizer not in ("sgd", "adam"):
            raise UserError(f"{where}: optimizer must be sgd or adam, not {cfg.optimizer!r}")
        if cfg.epochs < 1 or cfg.forget_batch < 1 or cfg.retain_batch < 1:
            raise UserError(f"{where}: epochs and batch sizes must be positive")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
