"""GA: gradient ascent on the forget set (maximise its CE). Retain data is unused.

Thudi et al., "Unrolling SGD" (EuroS&P 2022); Jang et al. (ACL 2023) for LLMs.
Unbounded, so it overshoots quickly: the lr/epochs of its config matter most.
"""

from pipeline.methods.base import MethodBase, ce


class GradAscent(MethodBase):
    def loss(self, model, forget, retain, progress):
        return -ce(model, forget), {"sample_grads": len(forget[1])}
