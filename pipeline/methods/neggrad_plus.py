"""NegGrad+: beta * CE(retain) - (1 - beta) * CE(forget).

Kurmanji et al., "Towards Unbounded Machine Unlearning" (SCRUB paper, NeurIPS 2023),
the strong variant of negative gradient. This is the naive objective whose forget and
retain gradients fight; LUR is built to fix exactly that.
"""

from pipeline.methods.base import MethodBase, ce


class NegGradPlus(MethodBase):
    def __init__(self, beta: float = 0.9):
        if not 0.0 <= beta <= 1.0:
            raise ValueError("neggrad_plus: beta must lie in [0, 1]")
        self.beta = beta

    def loss(self, model, forget, retain, progress):
        loss = self.beta * ce(model, retain) - (1.0 - self.beta) * ce(model, forget)
        return loss, {"sample_grads": len(forget[1]) + len(retain[1])}
