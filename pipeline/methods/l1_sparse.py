"""l1-sparse: fine-tune on retain with an l1 penalty that decays linearly to zero.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023),
github.com/OPTML-Group/Unlearn-Sparse: loss = CE_r + gamma * (1 - progress) * ||theta||_1.
"""

from pipeline.methods.base import MethodBase, ce


class L1Sparse(MethodBase):
    def __init__(self, gamma: float = 5e-5):
        self.gamma = gamma

    def loss(self, model, forget, retain, progress):
        l1 = sum(p.abs().sum() for p in model.parameters())
        loss = ce(model, retain) + self.gamma * (1.0 - progress) * l1
        return loss, {"sample_grads": len(retain[1])}
