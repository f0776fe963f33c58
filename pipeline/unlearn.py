"""The plain-PyTorch unlearning loop: one readable function from config to result.

Each epoch walks the (shuffled) forget set once; every forget batch is paired with the
next batch of a retain stream that cycles with its own shuffle, so the longer set never
cuts the shorter one short. The distributed engine runs the same `unlearn_step`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from tqdm.auto import tqdm

from pipeline import collective, loop_state
from pipeline.config import ConfigModel
from pipeline.devices import rng_devices
from pipeline.errors import UserError
from pipeline.methods import build_method
from pipeline.methods.base import Batch, ce
from pipeline.train import seed_everything


class UnlearnConfig(ConfigModel):
    """One unlearning run: the loop's schedule plus the method's own flat kwargs.

    Each epoch walks the forget set once in batches of `forget_batch`, pairing every
    forget batch with the next batch of a cycling retain stream. Methods that only use
    retain data (finetune, l1_sparse) still take the same number of steps.
    """

    method: str = Field("lur", description="unlearning method (pipeline.methods.METHODS)")
    method_kwargs: dict[str, Any] = Field(default_factory=dict,
                                          description="keyword arguments of the method's constructor")
    epochs: int = Field(2, ge=1, description="passes over the forget set")
    lr: float = Field(0.01, gt=0, description="learning rate")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd (momentum 0.9) or adam")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    forget_batch: int = Field(128, ge=1, description="forget samples per step (global, over all workers)")
    retain_batch: int = Field(128, ge=1, description="retain samples per step (global, over all workers)")
    seed: int = Field(0, ge=0, description="seed of the batch order and of random labels")
    conflict_every: int = Field(5, ge=0, description="log cos(grad L_u, grad L_r) every N steps (telemetry, not timed; 0 turns it off)")

    @model_validator(mode="after")
    def _method_kwargs_fit_the_method(self) -> "UnlearnConfig":
        try:
            build_method(self.method, **self.method_kwargs)  # the constructor checks its own ranges
        except UserError as e:
            raise ValueError(str(e)) from None
        return self


@dataclass
class UnlearnResult:
    seconds: float
    sample_grads: int
    steps: int
    conflict: list[tuple[int, float]] = field(default_factory=list)  # (step, cos)
    losses: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)  # wall clock (epoch seconds) at the end of each step

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

    Eval mode, so telemetry never moves BatchNorm statistics. Under torch.distributed
    both gradients are averaged over workers first: the cosine of the global gradients.
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
    g_u, g_r = flat(g_u), flat(g_r)
    collective.mean_([g_u, g_r])
    return F.cosine_similarity(g_u, g_r, dim=0).item()


def unlearn_step(model: nn.Module, method, opt: torch.optim.Optimizer, forget: Batch, retain: Batch, progress: float,
                 autocast: torch.dtype | None = None) -> dict:
    """One step: the method's loss, backward, gradient averaging across workers (a no-op
    on one), its gradient mask, the optimizer, then BatchNorm statistics averaged."""
    device_type = forget[0].device.type
    with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        loss, stats = method.loss(model, forget, retain, progress)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    collective.sync_step(model)
    if method.grad_mask is not None:
        for name, p in model.named_parameters():
            if p.grad is not None:
                p.grad.mul_(method.grad_mask[name])
    opt.step()
    collective.sync_buffers(model)
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


@dataclass
class LoopHooks:
    """What the distributed engine plugs into the plain loop; the local path passes none.

    - steps_per_epoch: fixed by the driver so every worker takes the same number of
      steps (a worker whose forget shard runs short cycles it);
    - resume: a state captured by `on_epoch_end`, to continue from;
    - on_epoch_end(epochs_done, state): checkpoint; not counted as method time;
    - on_step(step): runs after each step (fault injection in tests);
    - autocast: e.g. torch.bfloat16 on GPUs.
    """

    steps_per_epoch: int | None = None
    resume: dict[str, Any] | None = None
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
    on_step: Callable[[int], None] | None = None
    autocast: torch.dtype | None = None


def forget_order(n: int, batch: int, steps: int, gen: torch.Generator) -> torch.Tensor:
    """This epoch's forget permutation; extended with fresh shuffles only when the
    driver asks for more steps than the shard fills (a short shard of a sharded set)."""
    perm = torch.randperm(n, generator=gen)
    while steps > math.ceil(len(perm) / batch):
        perm = torch.cat([perm, torch.randperm(n, generator=gen)])
    return perm


def unlearn(model: nn.Module, forget: Batch, retain: Batch, cfg: UnlearnConfig, method=None, desc: str | None = None,
            hooks: LoopHooks | None = None) -> UnlearnResult:
    """Run one unlearning method on `model` in place."""
    hooks = hooks or LoopHooks()
    method = method or build_method(cfg.method, **cfg.method_kwargs)
    if hasattr(method, "run"):  # the oracle replaces the loop
        out = method.run(model, forget, retain)
        return UnlearnResult(out["seconds"], out["sample_grads"], steps=0)

    gen = seed_everything(cfg.seed)
    model.train()
    (xf, yf), (xr, yr) = forget, retain
    steps_per_epoch = hooks.steps_per_epoch or math.ceil(len(yf) / cfg.forget_batch)
    total = cfg.epochs * steps_per_epoch
    result = UnlearnResult(0.0, 0, total)
    overhead = 0.0  # telemetry and checkpoints: measured, but not the method's time
    start = time.perf_counter()
    # prepare() reads the original weights (SalUn's mask, SCRUB's teacher): on resume it
    # runs again on them before the checkpointed weights are loaded over.
    method.prepare(model, forget, retain)
    result.sample_grads += getattr(method, "prepare_sample_grads", 0)
    opt = make_optimizer(model, cfg)
    stream = RetainStream(len(yr), cfg.retain_batch, gen)
    first_epoch, step = 0, 0
    if hooks.resume is not None:
        first_epoch, step = loop_state.restore(hooks.resume, model, opt, gen, stream, result)
        start = time.perf_counter() - result.seconds
    with tqdm(total=total, initial=step, desc=desc or cfg.method, leave=False, mininterval=2.0, disable=None) as bar:
        for epoch in range(first_epoch, cfg.epochs):
            perm = forget_order(len(yf), cfg.forget_batch, steps_per_epoch, gen)
            for i in range(steps_per_epoch):
                fi, ri = perm[i * cfg.forget_batch : (i + 1) * cfg.forget_batch], stream.next()
                fb, rb = (xf[fi], yf[fi]), (xr[ri], yr[ri])
                if cfg.conflict_every and step % cfg.conflict_every == 0:
                    t = time.perf_counter()
                    result.conflict.append((step, gradient_conflict(model, method, fb, rb)))
                    overhead += time.perf_counter() - t
                stats = unlearn_step(model, method, opt, fb, rb, step / total, hooks.autocast)
                result.sample_grads += stats["sample_grads"]
                result.losses.append(stats["loss"])
                result.step_times.append(time.time())
                step += 1
                bar.update()
                if hooks.on_step:
                    hooks.on_step(step)
            if hooks.on_epoch_end:
                t = time.perf_counter()
                result.seconds = t - start - overhead
                hooks.on_epoch_end(epoch + 1, loop_state.capture(model, opt, gen, stream, result, epoch + 1, step))
                overhead += time.perf_counter() - t
    model.eval()
    result.seconds = time.perf_counter() - start - overhead
    return result
