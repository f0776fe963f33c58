"""RL: fit the forget set to random wrong labels while training on retain.

Golatkar et al. (CVPR 2020) / Hayase et al.; the form used by SalUn's code: CE of the
forget batch against fresh random labels each step, plus CE on the retain batch.
"""

from pipeline.methods.base import MethodBase, ce, num_classes_of, random_other_labels


class RandomLabel(MethodBase):
    def __init__(self, retain_weight: float = 1.0):
        self.retain_weight = retain_weight

    def unlearning_loss(self, model, forget):
        x, y = forget
        return ce(model, (x, random_other_labels(y, num_classes_of(model))))

    def loss(self, model, forget, retain, progress):
        loss = self.unlearning_loss(model, forget) + self.retain_weight * ce(model, retain)
        return loss, {"sample_grads": len(forget[1]) + len(retain[1])}
