"""The exact oracle: train a fresh model on the retain set with the original's recipe.

Every metric is judged by its distance to this model (Avg.Gap). It replaces the
unlearning loop (`run`), so the loop never calls `loss` on it.
"""

import torch
from torch import nn

from pipeline.config import TrainConfig
from pipeline.train import fit


def reinitialise(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()


class Retrain:
    grad_mask = None

    def __init__(self, **train_config):
        self.train_config = TrainConfig.from_dict(train_config, "retrain")

    def run(self, model, forget, retain):
        reinitialise(model, self.train_config.seed)
        return fit(model, retain[0], retain[1], self.train_config, desc="retrain")
