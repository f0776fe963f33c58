"""Typed run configs. One per run, saved with every checkpoint and in results.

Defaults sit next to their meaning. `from_dict` rejects unknown keys so a typo in a
shipped config fails at start-up, not silently.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.errors import UserError


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """A YAML file's content, or one line that says what is wrong with the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    except ValueError as e:  # a value YAML recognises but cannot build, e.g. the date 2024-02-30
        raise UserError(f"{what} {path}: {e}") from None


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
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{where}: {f.name} must be a finite number, got {value!r}")
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
        cfg = _from_dict(cls, data, where)
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise UserError(f"{where}: epochs and batch_size must be at least 1")
        if cfg.lr <= 0 or cfg.weight_decay < 0:
            raise UserError(f"{where}: lr must be positive and weight_decay not negative")
        from pipeline.models import ARCHITECTURES

        if cfg.arch not in ARCHITECTURES:
            raise UserError(f"{where}: unknown architecture {cfg.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        return cfg

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
