"""SCRUB: a student (the model) stays close to the original teacher on retain and moves
away from it on forget.

Kurmanji et al., "Towards Unbounded Machine Unlearning" (NeurIPS 2023),
github.com/meghdadk/SCRUB. The paper alternates max-steps (raise KL on forget) and
min-steps (KL + CE on retain) for the first `max_fraction` of training, then only
min-steps. With paired forget/retain batches we take both in one combined loss:

    alpha * KL_r + gamma * CE_r - [progress < max_fraction] * KL_f
"""

import copy

import torch
import torch.nn.functional as F

from pipeline.methods.base import MethodBase


def kl_to_teacher(student_logits, teacher_logits, temperature: float):
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1), log_target=True, reduction="batchmean"
    ) * (t * t)


class Scrub(MethodBase):
    def __init__(self, alpha: float = 1.0, gamma: float = 1.0, max_fraction: float = 0.5, temperature: float = 4.0):
        self.alpha, self.gamma, self.max_fraction, self.temperature = alpha, gamma, max_fraction, temperature
        self.teacher = None

    def prepare(self, model, forget, retain):
        self.teacher = copy.deepcopy(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _kl(self, model, x):
        with torch.no_grad():
            t = self.teacher(x)
        return kl_to_teacher(model(x), t, self.temperature)

    def unlearning_loss(self, model, forget):
        return -self._kl(model, forget[0])

    def loss(self, model, forget, retain, progress):
        xr, yr = retain
        logits_r = model(xr)
        with torch.no_grad():
            t_r = self.teacher(xr)
        loss = self.alpha * kl_to_teacher(logits_r, t_r, self.temperature) + self.gamma * F.cross_entropy(logits_r, yr)
        grads = len(yr)
        if progress < self.max_fraction:
            loss = loss + self.unlearning_loss(model, forget)
            grads += len(forget[1])
        return loss, {"sample_grads": grads}
