"""LUR: Learning to Unlearn while Retaining (Patel & Qiu, ICCV 2025).

A lookahead step on the retain loss, then the unlearning loss at the looked-ahead
weights:

    inner:  theta' = theta - alpha * grad L_r(theta)
    outer:  J(theta) = w_r * L_r(theta) + w_u * L_u(theta')

By Taylor, L_u(theta') ~ L_u(theta) - alpha <grad L_u, grad L_r>: minimising J also
rewards forget and retain gradients that agree, so they stop fighting.

`order="second"` differentiates through the inner step (create_graph=True), as in the
paper; `order="first"` treats grad L_r as a constant (then dJ/dtheta = w_r grad L_r(theta)
+ w_u grad L_u(theta')), the cheap variant for big models. The paper's exact
hyper-parameters are not public; ours come from a measured grid (pipeline/configs).

Options:
- `unlearn_loss`: "ga" (L_u = -CE on forget, the paper's form) or "random_label"
  (CE against random wrong labels; bounded, so it cannot run away).
- `reinit_fraction` > 0: before training, re-initialise that share of the most
  forget-salient weights (|w * grad L_f|) in the last `reinit_layers` layers, as a
  reference re-implementation does. Off by default: measure before trusting it.

The fast weights go through `torch.func.functional_call`, outside DDP's forward: the
distributed loop must all-reduce gradients explicitly (`pipeline.collective`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pipeline.methods.base import MethodBase, forget_gradients, num_classes_of, random_other_labels


class LUR(MethodBase):
    def __init__(
        self,
        alpha: float = 0.01,
        w_r: float = 1.0,
        w_u: float = 0.1,
        order: str = "second",
        unlearn_loss: str = "ga",
        reinit_fraction: float = 0.0,
        reinit_layers: int = 2,
    ):
        if order not in ("first", "second"):
            raise ValueError("lur: order must be 'first' or 'second'")
        if unlearn_loss not in ("ga", "random_label"):
            raise ValueError("lur: unlearn_loss must be 'ga' or 'random_label'")
        if not 0.0 <= reinit_fraction < 1.0:
            raise ValueError("lur: reinit_fraction must lie in [0, 1)")
        self.alpha, self.w_r, self.w_u = alpha, w_r, w_u
        self.order, self.unlearn_loss_kind = order, unlearn_loss
        self.reinit_fraction, self.reinit_layers = reinit_fraction, reinit_layers
        self.prepare_sample_grads = 0

    def _unlearning_loss_at(self, model, params, forget) -> torch.Tensor:
        x, y = forget
        logits = model(x) if params is None else functional_call(model, params, (x,))
        if self.unlearn_loss_kind == "ga":
            return -F.cross_entropy(logits, y)
        return F.cross_entropy(logits, random_other_labels(y, num_classes_of(model)))

    def unlearning_loss(self, model, forget):
        return self._unlearning_loss_at(model, None, forget)

    def prepare(self, model, forget, retain):
        if self.reinit_fraction > 0:
            reinit_salient(model, forget, self.reinit_fraction, self.reinit_layers)
            self.prepare_sample_grads = len(forget[1])

    def loss(self, model, forget, retain, progress):
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = [p for p in model.parameters() if p.requires_grad]
        xr, yr = retain
        retain_loss = F.cross_entropy(model(xr), yr)
        # Second order keeps the graph: J is differentiated through this inner step.
        grads = torch.autograd.grad(retain_loss, params, create_graph=self.order == "second")
        if self.order == "first":
            grads = [g.detach() for g in grads]
        fast = {n: p - self.alpha * g for n, p, g in zip(names, params, grads)}
        # Buffers (BatchNorm running stats) are shared with the real model: the
        # lookahead forward updates them like any other training forward would.
        fast.update(dict(model.named_buffers()))
        unlearn = self._unlearning_loss_at(model, fast, forget)
        if self.order == "second":
            loss = self.w_r * retain_loss + self.w_u * unlearn
        else:
            # First order: dJ/dtheta = w_r g + w_u grad L_u(theta'). We already hold g, so
            # <g, theta> stands in for L_r (same gradient) instead of a second backward
            # through the retain batch; `loss` keeps J's value for logging.
            surrogate = sum((g * p).sum() for g, p in zip(grads, params))
            loss = self.w_r * (surrogate - surrogate.detach() + retain_loss.detach()) + self.w_u * unlearn
        # second order: retain grads once for the inner step, once more for the
        # Hessian-vector product when the outer loss is differentiated through it.
        n_grads = len(yr) * (2 if self.order == "second" else 1) + len(forget[1])
        return loss, {"sample_grads": n_grads, "retain_loss": retain_loss.item(), "unlearn_loss": unlearn.item()}


def reinit_salient(model: nn.Module, forget, fraction: float, layers: int) -> int:
    """Re-initialise the `fraction` most salient (|w * grad L_f|) weights of the last
    `layers` weight-bearing modules; returns how many weights were reset."""
    modules = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-layers:]
    grads = forget_gradients(model, forget)
    by_param = {id(p): g for (_, p), g in zip(model.named_parameters(), grads.values())}
    saliency = [(m.weight, (m.weight.detach() * by_param[id(m.weight)]).abs()) for m in modules]
    flat = torch.cat([s.flatten() for _, s in saliency])
    k = max(1, int(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, k, sorted=False).indices] = True
    reset, i = 0, 0
    with torch.no_grad():
        for m, (w, s) in zip(modules, saliency):
            fresh = copy.deepcopy(m)
            fresh.reset_parameters()
            mask = chosen[i : i + s.numel()].view_as(s)
            i += s.numel()
            w[mask] = fresh.weight[mask]
            reset += int(mask.sum())
    return reset
