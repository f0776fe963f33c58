"""Plain predict code: the served model behind one reference, validated before a swap.

No Ray and no HTTP here, so it is unit-tested in milliseconds; `serving/app.py` is the
thin Ray Serve shell around it. A swap validates the candidate first (the card's input
shape and classes match, every weight finite, a smoke prediction gives finite logits),
then replaces one tuple reference: a request in flight keeps the (model, version) it
started with, so every answer names the version that produced it.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


class RejectedModel(ValueError):
    """A candidate version that must not be served, with the reason."""


class BadInstances(ValueError):
    """A predict payload the model cannot take, with what was wrong."""


@dataclass(frozen=True)
class Served:
    model: nn.Module
    version: str
    card: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.card["input_shape"])

    @property
    def features(self) -> int:
        return math.prod(self.input_shape)


def validate_candidate(model: nn.Module, card: dict[str, Any], current: Served | None = None) -> None:
    """Raise RejectedModel unless `model` is safe to serve in place of `current`."""
    shape = tuple(card.get("input_shape", ()))
    if not shape or not card.get("num_classes"):
        raise RejectedModel("the model card lacks input_shape or num_classes")
    if current is not None:
        if shape != current.input_shape:
            raise RejectedModel(f"input shape {list(shape)} differs from the served {list(current.input_shape)}")
        if card["num_classes"] != current.card["num_classes"]:
            raise RejectedModel(f"{card['num_classes']} classes, the served model has {current.card['num_classes']}")
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise RejectedModel(f"weight {name} has NaN or inf values")
    model.eval()
    with torch.no_grad():
        probe = torch.cat([torch.zeros(1, *shape), torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))])
        out = model(probe)
    if out.shape != (4, card["num_classes"]):
        raise RejectedModel(f"a smoke prediction gave shape {tuple(out.shape)}, expected (4, {card['num_classes']})")
    if not torch.isfinite(out).all():
        raise RejectedModel("a smoke prediction gave NaN or inf logits")


class Predictor:
    def __init__(self, max_instances: int = 1024):
        self.max_instances = max_instances
        self._served: Served | None = None
        self._lock = threading.Lock()  # swaps are serialised; reads take the reference without it
        self.last_error: str | None = None

    @property
    def served(self) -> Served | None:
        return self._served

    @property
    def version(self) -> str | None:
        s = self._served
        return s.version if s else None

    def swap(self, model: nn.Module, card: dict[str, Any], version: str) -> None:
        """Validate, then serve `model` as `version`; on failure keep serving the old one."""
        with self._lock:
            try:
                validate_candidate(model, card, self._served)
            except RejectedModel as e:
                self.last_error = f"version {version} rejected: {e}"
                raise
            self._served = Served(model.eval(), str(version), card)
            self.last_error = None

    def parse(self, instances: Any) -> torch.Tensor:
        """Instances (a list of flat float lists) -> a batch tensor, or BadInstances.

        Every served version has the same input shape (a swap checks it), so a tensor
        parsed now fits whichever version the batch runs on."""
        served = self._served
        if served is None:
            raise RuntimeError("no model loaded yet")
        if not isinstance(instances, (list, np.ndarray)):
            raise BadInstances(f"instances must be a list of {served.features}-float lists")
        if not 1 <= len(instances) <= self.max_instances:
            raise BadInstances(f"send between 1 and {self.max_instances} instances, not {len(instances)}")
        try:  # no dtype first: numpy would turn "1.5" into 1.5 and True into 1.0 without a word
            raw = np.asarray(instances)
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise BadInstances(f"instances must be a list of {served.features}-float lists (same length each)") from None
        if raw.dtype.kind not in "iuf":  # strings, booleans, integers too large for any float, nesting
            raise BadInstances(f"instances must be numbers only: a list of {served.features}-float lists")
        x = raw.astype(np.float32)
        if x.ndim != 2:
            raise BadInstances(f"instances must be a list of {served.features}-float lists")
        if x.shape[1] != served.features:
            raise BadInstances(f"each instance needs {served.features} floats (shape {list(served.input_shape)} "
                               f"flattened), got {x.shape[1]}")
        if not np.isfinite(x).all():
            raise BadInstances("instances contain NaN or inf, or numbers too large for float32")
        return torch.from_numpy(x).reshape(len(x), *served.input_shape)

    def predict_batch(self, xs: list[torch.Tensor]) -> list[tuple[list[int], str]]:
        """Several requests' parsed instances in one forward pass, on one version (what
        @serve.batch hands us); each request gets its own predictions back."""
        served = self._served
        with torch.no_grad():
            preds = served.model(torch.cat(xs)).argmax(1).tolist()
        out, i = [], 0
        for x in xs:
            out.append((preds[i:i + len(x)], served.version))
            i += len(x)
        return out

    def predict(self, instances: Any) -> tuple[list[int], str]:
        return self.predict_batch([self.parse(instances)])[0]


def read_json(raw: bytes, limit: int) -> Any:
    """A request body as JSON, or ValueError with what was wrong (never a 500: NaN,
    bad UTF-8, nesting past the recursion limit are all the sender's mistakes)."""
    if len(raw) > limit:
        raise ValueError(f"body is {len(raw)} bytes; at most {limit}")
    try:
        return json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not valid JSON")))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"body is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError("body is not valid JSON: nested too deeply") from None
