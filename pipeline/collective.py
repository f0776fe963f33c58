"""Gradient averaging across workers, in plain torch.distributed (no Ray here).

The distributed engine does not wrap the model in DDP: DDP syncs gradients only inside
its own forward/backward, and LUR's lookahead runs the model through
`torch.func.functional_call` on fast weights, outside that forward (FIELD-NOTES.md).
Instead the loop averages every gradient explicitly after backward, one flat
all-reduce per step, which is the same for every method. Float buffers (BatchNorm
statistics) are averaged too, so all workers end every step with identical state.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


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
