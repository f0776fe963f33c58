"""The plain-PyTorch unlearning loop: one readable function from config to result.

Each epoch walks the (shuffled) forget set once; every forget batch is paired with the
next batch of a retain stream that cycles with its own shuffle, so the longer set never
cuts the shorter one short. The distributed engine runs the same `unlearn_step`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pipeline.config import UnlearnConfig
from pipeline.devices import rng_devices
from pipeline.methods import build_method
from pipeline.methods.base import Batch, ce
from pipeline.train import seed_everything


@dataclass
class UnlearnResult:
    seconds: float
    sample_grads: int
    steps: int
    conflict: list[tuple[int, float]] = field(default_factory=list)  # (step, cos)
    losses: list[float] = field(default_factory=list)

    def conflict_share(self) -> float | None:
        """Share of sampled steps whose forget and retain gradients conflict (cos < 0)."""
        if not self.conflict:
            return None
        return sum(c < 0 for _, c in self.conflict) / len(self.conflict)

    def summary(self) -> dict[str, Any]:
        cos = [c for _, c in self.conflict]
        return {
            "seconds": self.seconds,
            "sample_grads": self.sample_grads,
            "steps": self.steps,
            "conflict_share": self.conflict_share(),
            "conflict_mean_cos": sum(cos) / len(cos) if cos else None,
        }


def make_optimizer(model: nn.Module, cfg: UnlearnConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def gradient_conflict(model: nn.Module, method, forget: Batch, retain: Batch) -> float:
    """cos(grad L_u, grad L_r) at the current weights; negative = the objectives fight.

    Eval mode, so telemetry never moves BatchNorm statistics.
    """
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    # Random-label losses draw from the global RNG (the GPU's when on one): fork it, so
    # that logging telemetry never changes the training trajectory.
    with torch.random.fork_rng(devices=rng_devices(params[0].device)):
        g_u = torch.autograd.grad(method.unlearning_loss(model, forget), params, allow_unused=True)
    g_r = torch.autograd.grad(ce(model, retain), params, allow_unused=True)
    model.train(was_training)
    flat = lambda gs: torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params)])
    return F.cosine_similarity(flat(g_u), flat(g_r), dim=0).item()


def unlearn_step(model: nn.Module, method, opt: torch.optim.Optimizer, forget: Batch, retain: Batch, progress: float) -> dict:
    """One step: the method's loss, backward, its gradient mask, the optimizer."""
    loss, stats = method.loss(model, forget, retain, progress)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if method.grad_mask is not None:
        for name, p in model.named_parameters():
            if p.grad is not None:
                p.grad.mul_(method.grad_mask[name])
    opt.step()
    stats["loss"] = loss.item()
    return stats


class RetainStream:
    """Endless, reshuffled-every-pass batches of the retain set."""

    def __init__(self, n: int, batch: int, gen: torch.Generator):
        self.n, self.batch, self.gen = n, min(batch, n), gen
        self.perm, self.pos = torch.randperm(n, generator=gen), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx


def unlearn(model: nn.Module, forget: Batch, retain: Batch, cfg: UnlearnConfig, method=None, desc: str | None = None) -> UnlearnResult:
    """Run one unlearning method on `model` in place."""
    method = method or build_method(cfg.method, **cfg.method_kwargs)
    if hasattr(method, "run"):  # the oracle replaces the loop
        out = method.run(model, forget, retain)
        return UnlearnResult(out["seconds"], out["sample_grads"], steps=0)

    gen = seed_everything(cfg.seed)
    model.train()
    (xf, yf), (xr, yr) = forget, retain
    steps_per_epoch = math.ceil(len(yf) / cfg.forget_batch)
    total = cfg.epochs * steps_per_epoch
    result = UnlearnResult(0.0, 0, total)
    telemetry = 0.0
    start = time.perf_counter()
    method.prepare(model, forget, retain)
    result.sample_grads += getattr(method, "prepare_sample_grads", 0)
    opt = make_optimizer(model, cfg)
    stream = RetainStream(len(yr), cfg.retain_batch, gen)
    step = 0
    with tqdm(total=total, desc=desc or cfg.method, leave=False, mininterval=2.0, disable=None) as bar:
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(yf), generator=gen)
            for i in range(steps_per_epoch):
                fi, ri = perm[i * cfg.forget_batch : (i + 1) * cfg.forget_batch], stream.next()
                fb, rb = (xf[fi], yf[fi]), (xr[ri], yr[ri])
                if cfg.conflict_every and step % cfg.conflict_every == 0:
                    t = time.perf_counter()
                    result.conflict.append((step, gradient_conflict(model, method, fb, rb)))
                    telemetry += time.perf_counter() - t
                stats = unlearn_step(model, method, opt, fb, rb, step / total)
                result.sample_grads += stats["sample_grads"]
                result.losses.append(stats["loss"])
                step += 1
                bar.update()
    model.eval()
    result.seconds = time.perf_counter() - start - telemetry
    return result
