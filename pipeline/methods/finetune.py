"""FT: keep training on the retain set only; forgetting comes from catastrophic forgetting.

Warnecke et al., "Machine Unlearning of Features and Labels" (NDSS 2023); the baseline
of every unlearning benchmark since.
"""

from pipeline.methods.base import MethodBase, ce


class Finetune(MethodBase):
    def loss(self, model, forget, retain, progress):
        return ce(model, retain), {"sample_grads": len(retain[1])}
