"""The tiny interface every unlearning method implements, and the losses they share.

A method is a small class built from flat keyword arguments. The loop calls

    prepare(model, forget, retain)                 once, before the first step (optional)
    loss(model, forget_batch, retain_batch, progress) -> (loss, stats)   every step

then does backward, applies `grad_mask` if the method set one, and steps the
optimizer. `progress` runs from 0 to 1 over the run, for methods with a schedule.
`stats["sample_grads"]` counts the per-sample gradients the step computed: the cost
the benchmark compares with retraining. `unlearning_loss` is the L_u that the
gradient-conflict telemetry pairs with the retain CE: cos(grad L_u, grad L_r) at the
current weights, negative when forgetting and retaining pull apart.

An oracle (retrain) replaces the whole loop instead: it defines `run(...)`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import collective

Batch = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class UnlearningMethod(Protocol):
    grad_mask: dict[str, torch.Tensor] | None

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch) -> None: ...

    def loss(self, model: nn.Module, forget: Batch, retain: Batch, progress: float) -> tuple[torch.Tensor, dict]: ...

    def unlearning_loss(self, model: nn.Module, forget: Batch) -> torch.Tensor: ...


class MethodBase:
    """Defaults for the optional parts; methods compose these helpers, nothing more."""

    grad_mask: dict[str, torch.Tensor] | None = None

    def prepare(self, model: nn.Module, forget: Batch, retain: Batch) -> None:
        pass

    def unlearning_loss(self, model: nn.Module, forget: Batch) -> torch.Tensor:
        return -ce(model, forget)


def ce(model: nn.Module, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def random_other_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A uniformly random label different from the true one, per sample."""
    shift = torch.randint(1, num_classes, labels.shape, device=labels.device)
    return (labels + shift) % num_classes


def num_classes_of(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features


def forget_gradients(model: nn.Module, forget: Batch, batch: int = 512) -> dict[str, torch.Tensor]:
    """Gradient of the summed forget CE w.r.t. every parameter, accumulated in chunks (eval mode).

    Under torch.distributed the sums are added over workers: the global gradient when the
    forget set is sharded, N times it when replicated. Its users rank weights by
    magnitude, which the factor does not change, so every worker picks the same weights.
    """
    was_training = model.training
    model.eval()
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    x, y = forget
    for i in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[i : i + batch]), y[i : i + batch], reduction="sum")
        for (n, _), g in zip(model.named_parameters(), torch.autograd.grad(loss, list(model.parameters()))):
            grads[n] += g
    collective.sum_(list(grads.values()))
    model.train(was_training)
    return grads
