"""Gradient averaging across workers, in plain torch.distributed (no Ray here).

The distributed engine does not wrap the model in DDP: DDP syncs gradients only inside
its own forward/backward, and LUR's lookahead runs the model through
`torch.func.functional_call` on fast weights, outside that forward, so DDP would
leave the workers' weights apart without a word.
Instead the loop averages every gradient explicitly after backward, one flat
all-reduce per step, which is the same for every method. Float buffers (BatchNorm
statistics) are averaged too, so all workers end every step with identical state.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

# The differentiable all_reduce below is deprecated in favour of a private module
# (torch.distributed._functional_collectives) whose autograd support is not public.
# It works, twice-differentiably; say so once instead of on every forward.
warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_reduce is deprecated")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _flat_all_reduce(tensors: list[torch.Tensor], op) -> None:
    tensors = [t for t in tensors if t is not None]
    if world_size() == 1 or not tensors:
        return
    # One bucket per dtype/device: one collective instead of one per parameter.
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=op)
    i = 0
    for t in tensors:
        t.copy_(flat[i : i + t.numel()].view_as(t))
        i += t.numel()


def mean_(tensors: list[torch.Tensor]) -> None:
    """Average `tensors` in place over all workers (no-op when not distributed)."""
    _flat_all_reduce(tensors, dist.ReduceOp.SUM)
    if world_size() > 1:
        for t in tensors:
            if t is not None:
                t.div_(world_size())


def sum_(tensors: list[torch.Tensor]) -> None:
    """Sum `tensors` in place over all workers (no-op when not distributed)."""
    _flat_all_reduce(tensors, dist.ReduceOp.SUM)


def sync_step(model: torch.nn.Module) -> None:
    """Average gradients before the optimizer step."""
    mean_([p.grad for p in model.parameters() if p.grad is not None])


def sync_buffers(model: torch.nn.Module) -> None:
    """Average float buffers (BatchNorm running stats) after the step."""
    mean_([b for b in model.buffers() if b.is_floating_point()])


def scalar_sum(value: float, device: torch.device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    sum_([t])
    return float(t.item())


def max_weight_divergence(model: torch.nn.Module) -> float:
    """max |w - w_rank0| over all parameters and workers: 0.0 when the workers agree."""
    if world_size() == 1:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch, on CPU (gloo) and GPU.

    With per-worker statistics, N workers normalise each half (third, ...) of a batch on
    its own, which is not the computation one worker does on the whole batch: measured
    on Fashion-MNIST, NegGrad+ on 2 workers forgot 2.4 points more UA than on 1. torch's
    SyncBatchNorm does this on GPUs only; this one sums per-channel count, sum and sum of
    squares with `torch.distributed.nn.functional.all_reduce`, which is differentiable
    (twice: second-order LUR differentiates through it). In eval mode it is plain
    BatchNorm on the running statistics, which it updates with the global ones.
    """

    def _check_input_dim(self, input):  # any (N, C, ...) input
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([count, x.sum(dims), (x * x).sum(dims)]))
        n, total, total_sq = stats[0], stats[1 : 1 + x.shape[1]], stats[1 + x.shape[1] :]
        mean = total / n
        var = (total_sq / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * (var.detach() * n / (n - 1).clamp_min(1)))
                self.num_batches_tracked.add_(1)
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Swap every BatchNorm for GlobalBatchNorm in place, keeping weights and statistics
    (the state-dict keys are unchanged, so checkpoints load either way)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats).to(next(child.buffers()).device)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
