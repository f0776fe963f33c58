"""Small, real classifiers and their checkpoint format.

Each model is built from flat keyword arguments (`build_model("cnn", in_channels=1,
num_classes=10, ...)`). A checkpoint is a directory with `model.safetensors` (the
state_dict) and `model.json` (the model card: architecture, kwargs, input shape,
classes, config hash, anything else the run wants to record). Loading reads tensors
with safetensors and never unpickles.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from pipeline.errors import UserError


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU-pool) and a two-layer head; 28x28 or 8x8 inputs.

    The head sees the whole (H/4 x W/4) feature map: with that much capacity and no
    weight decay the model memorises its train set, as the field's originals do.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int] = (28, 28),
                 channels: tuple[int, int] = (32, 64), hidden: int = 128):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = c2 * (image_size[0] // 4) * (image_size[1] // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool), as used across the unlearning literature."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for j in range(2):
                blocks.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


ARCHITECTURES = {"mlp": MLP, "cnn": CNN, "resnet18": ResNet18}
# Constructor arguments `build_model` derives from the data; model_kwargs supplies the rest.
BUILT_BY_BUILD_MODEL = ("in_features", "in_channels", "num_classes", "image_size")


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build an architecture by name; the input shape decides in_features/in_channels."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    try:
        return _build(arch, input_shape, num_classes, **kwargs)
    except TypeError as e:  # a typo in model_kwargs
        raise UserError(f"{arch}: bad model_kwargs {kwargs} ({e})") from None


def _build(arch: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    if arch == "mlp":
        in_features = 1
        for s in input_shape:
            in_features *= s
        return MLP(in_features, num_classes, **kwargs)
    if len(input_shape) != 3:
        raise UserError(f"{arch} needs image inputs (C, H, W); this data has shape {tuple(input_shape)}: use --arch mlp")
    if arch == "cnn":
        if input_shape[1] < 4 or input_shape[2] < 4:
            raise UserError(f"cnn needs images of at least 4x4 pixels, not {tuple(input_shape[1:])}")
        kwargs = {**kwargs, "image_size": tuple(input_shape[1:])}
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
    return ARCHITECTURES[arch](input_shape[0], num_classes, **kwargs)


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able config: the cache key of trained models."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(directory: Path, model: nn.Module, card: dict[str, Any]) -> None:
    """Write `model.safetensors` and `model.json`. The card must say how to rebuild the model."""
    for key in ("arch", "model_kwargs", "input_shape", "num_classes"):
        if key not in card:
            raise ValueError(f"model card lacks {key!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    (directory / "model.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))


def load_checkpoint(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its card and load weights with safetensors (no pickle)."""
    directory = Path(directory)
    card_path, weights_path = directory / "model.json", directory / "model.safetensors"
    if not card_path.exists() or not weights_path.exists():
        raise UserError(f"{directory} is not a checkpoint: it needs model.json and model.safetensors")
    card = json.loads(card_path.read_text())
    model = build_model(card["arch"], tuple(card["input_shape"]), card["num_classes"], **card["model_kwargs"])
    model.load_state_dict(load_file(str(weights_path)))
    return model, card
