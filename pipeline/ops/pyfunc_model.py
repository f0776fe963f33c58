"""The MLflow pyfunc model of a registered version, as code ("models from code").

MLflow runs this file when it loads a version (`mlflow.pyfunc.load_model(
"models:/NAME@champion")`, `mlflow models serve`, `mlflow.models.evaluate`); nothing is
pickled. The version's artifact `checkpoint/` is the project's own checkpoint (the
safetensors weights and the card that says how to rebuild the network), and the
weights' SHA-256 travels in the model's `model_config`: loading refuses weights that do
not match, as `Registry.load` does.

Input: a float32 array (or DataFrame) of flattened samples, `(n, prod(input_shape))`, the
same rows `POST /predict` takes as `{"instances": ...}` (MLflow's scoring server takes
that payload too). Output: the predicted class per row, as `/predict` returns it.

The package code it needs (`pipeline.models`, `pipeline.errors`: pure PyTorch) ships
with the model (`code_paths`), so an environment with torch, safetensors and MLflow
loads it without installing this project.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class UnlearnClassifier(PythonModel):
    def load_context(self, context) -> None:
        from pipeline.models import load_checkpoint

        directory = Path(context.artifacts["checkpoint"])
        expected = (context.model_config or {}).get("weights_sha256")
        digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
        if expected is None or digest != expected:
            raise ValueError(f"{directory}/model.safetensors does not match the SHA-256 recorded with the model")
        self.model, self.card = load_checkpoint(directory)
        self.model.eval()
        self.shape = tuple(self.card["input_shape"])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        import torch

        x = np.asarray(model_input, dtype=np.float32)
        features = int(np.prod(self.shape))
        if x.ndim != 2 or x.shape[1] != features:
            raise ValueError(f"expected rows of {features} floats (shape {list(self.shape)} flattened), "
                             f"got an array of shape {list(x.shape)}")
        with torch.no_grad():
            return self.model(torch.from_numpy(x).reshape(len(x), *self.shape)).argmax(1).numpy().astype(np.int64)


mlflow.models.set_model(UnlearnClassifier())
