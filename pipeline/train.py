"""Plain-PyTorch supervised training: the original model and the retrain oracle.

One-cycle SGD over in-memory tensors, no weight decay by default, so the model
memorises its train set the way the field's originals do.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pipeline.config import TrainConfig
from pipeline.datasets.split import Split


def to_tensors(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(split.features)).reshape(len(split), *split.shape)
    return x, torch.from_numpy(split.labels)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, desc: str = "train",
        steps_per_epoch: int | None = None, batch_size: int | None = None,
        after_backward: Callable[[nn.Module], None] | None = None) -> dict[str, Any]:
    """Train `model` in place; return wall seconds and sample-gradients computed.

    On Ray Train workers (pipeline.ray.train) every worker holds a shard of a different
    size, so the caller fixes the step count (from the global row count) and the
    per-worker batch, batches wrap around the shard, and `after_backward` averages the
    gradients across workers before each step.
    """
    gen = seed_everything(cfg.seed)
    n = len(y)
    wrap = steps_per_epoch is not None
    batch = batch_size or cfg.batch_size
    steps_per_epoch = steps_per_epoch or (n + batch - 1) // batch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    model.train()
    start, grads = time.perf_counter(), 0
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=desc, leave=False, mininterval=2.0, disable=None)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[(i * batch + torch.arange(batch)) % n] if wrap else perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward(model)
            opt.step()
            sched.step()
            grads += len(idx)
            bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    model.eval()
    return {"seconds": time.perf_counter() - start, "sample_grads": grads}
