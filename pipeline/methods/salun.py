"""SalUn: random-label unlearning restricted to the most forget-salient weights.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency"
(ICLR 2024), github.com/OPTML-Group/Unlearn-Saliency. The mask keeps the `sparsity`
share of weights with the largest |grad of forget CE| (one global threshold); only
those weights move.
"""

import torch

from pipeline.methods.base import forget_gradients
from pipeline.methods.random_label import RandomLabel


class SalUn(RandomLabel):
    def __init__(self, sparsity: float = 0.5, retain_weight: float = 1.0):
        super().__init__(retain_weight)
        if not 0.0 < sparsity <= 1.0:
            raise ValueError("salun: sparsity (share of weights kept trainable) must lie in (0, 1]")
        self.sparsity = sparsity

    def prepare(self, model, forget, retain):
        grads = forget_gradients(model, forget)
        flat = torch.cat([g.abs().flatten() for g in grads.values()])
        k = max(1, int(self.sparsity * flat.numel()))
        # Exact top-k indices: a threshold compare would select every weight tied at 0.
        keep = torch.zeros_like(flat)
        keep[torch.topk(flat, k, sorted=False).indices] = 1.0
        self.grad_mask, i = {}, 0
        for n, g in grads.items():
            self.grad_mask[n] = keep[i : i + g.numel()].view_as(g)
            i += g.numel()
        self.prepare_sample_grads = len(forget[1])
