"""The deployment on the platform a team already runs: the ledger on PostgreSQL and MLflow
as a real tracking server (PostgreSQL backend, artifacts served by it) on loopback."""

from pathlib import Path

import numpy as np
import pytest

from jobs.init import run_init
from jobs.nightly import run_nightly
from pipeline.datasets.store import read_store
from pipeline.ops.home import Home
from pipeline.ops.nightly_config import NightlyConfig
from pipeline.ray.train import RayOptions

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def test_a_nightly_on_postgresql_and_a_tracking_server_keeps_every_artifact_on_the_server(
        ray_cluster, postgres, mlflow_server, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("UNLEARN_LEDGER_URL", postgres.new_database())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    home = Home(tmp_path / "home")
    run_init(home, "digits", RayOptions(), ROOT / "pipeline/configs/digits.yaml", log=lambda *a: None)
    ledger, registry = home.ledger(), home.registry()
    assert ledger.engine.url.get_backend_name() == "postgresql" and registry.uri == mlflow_server.url
    req, _ = ledger.add(subject_id="digits-train-subj-000005")
    out = run_nightly(home, NightlyConfig(), RayOptions(), log=lambda *a: None)
    assert out["state"] == "done" and ledger.get(req["request_id"])["status"] == "purged"

    # every artifact went to the server's store; nothing to the home's local folder
    assert not (home.root / "mlartifacts").exists() or not any((home.root / "mlartifacts").rglob("*"))
    names = [p.name for p in mlflow_server.artifacts.rglob("*") if p.is_file()]
    assert names.count("MLmodel") == 2 and names.count("model.safetensors") == 2 and names.count("lineage.json") == 2
    assert "metrics.png" in names and "evaluation.json" in names
    # a replica (or any machine) loads the champion from there, with its hash checked
    model, card = registry.load(registry.champion())
    _, test = read_store(home.store())
    x = test.features[:8].astype(np.float32)
    pyfunc = mlflow.pyfunc.load_model(mlflow.artifacts.download_artifacts(  # into the test's folder, not /tmp
        f"models:/{registry.name}@champion", dst_path=str(tmp_path / "m")))
    import torch
    expected = model.eval()(torch.from_numpy(x).reshape(len(x), *card["input_shape"])).argmax(1).tolist()
    assert pyfunc.predict(x).tolist() == expected
