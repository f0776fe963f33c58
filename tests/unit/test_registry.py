"""MLflow registry on a real SQLite store (no Ray): versions, champion, lineage, no pickle."""

import pickle

import numpy as np
import pytest
import torch

from pipeline.errors import UserError
from pipeline.models import build_model
from pipeline.ops.lineage import Lineage
from pipeline.ops.registry import Registry, checkpoint_of

CARD = {"arch": "mlp", "model_kwargs": {"hidden": 8}, "input_shape": [4], "num_classes": 3}


@pytest.fixture
def registry(tmp_path):
    return Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "unlearn-test", tmp_path / "artifacts")


def register(registry, seed, parent=None, batch="b"):
    torch.manual_seed(seed)
    model = build_model("mlp", (4,), 3, hidden=8)
    run = registry.start_run(batch, {"batch_id": batch})
    lineage = Lineage(summary=f"test version {seed}", batch_id=batch, parent_version=parent, method="train",
                      config=None, config_hash="-", dataset="test", store_snapshot="-", request_ids=[f"r{seed}"],
                      excluded_requests=[f"r{seed}"], metrics={"TA": 50.0})
    v = registry.register(run, model, CARD, lineage)
    registry.end_run(run)
    return v, model


def test_versions_champion_and_lineage(registry):
    assert registry.champion() is None
    v1, m1 = register(registry, 1, batch="init")
    registry.set_champion(v1)
    v2, m2 = register(registry, 2, parent=v1, batch="night-1")
    assert (v1, v2) == (1, 2) and registry.champion() == 1
    registry.set_champion(v2)
    assert registry.champion() == 2
    assert registry.find_batch("night-1") == 2
    assert registry.version(2)["tags"]["parent_version"] == "1"
    assert registry.lineage(2).excluded_requests == ["r2"]
    loaded, card = registry.load(2)
    for k, v in m2.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_loading_never_unpickles(registry, monkeypatch):
    v, _ = register(registry, 1)

    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    registry.load(v)  # safetensors + JSON only
    assert {p.name for p in checkpoint_of(registry.download(v)).iterdir()} == {"model.safetensors", "model.json"}
    assert (registry.download(v) / "MLmodel").exists()  # an MLflow pyfunc model, as code
    import mlflow

    model = mlflow.pyfunc.load_model(registry.version(v)["source"])  # MLflow's loader unpickles nothing either
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    assert model.predict(x).tolist() == registry.load(v)[0].eval()(torch.from_numpy(x)).argmax(1).tolist()


def test_tampered_or_deleted_weights_are_refused(registry):
    v, _ = register(registry, 1)
    weights = checkpoint_of(registry.download(v)) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="SHA-256"):
        registry.load(v)
    import mlflow

    with pytest.raises(Exception, match="SHA-256"):  # MLflow's loader checks it too
        mlflow.pyfunc.load_model(registry.version(v)["source"])
    registry.delete_weights(v, "2026-01-01")
    with pytest.raises(UserError, match="deleted"):
        registry.load(v)


def test_unreachable_tracking_server_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="MLflow"):
        Registry("http://127.0.0.1:9", "m", tmp_path)


def test_a_lineage_that_cannot_be_read_raises_instead_of_reading_as_empty(registry, tmp_path):
    """An empty lineage read by mistake would be written into every descendant (they
    would 'exclude' nothing their ancestors forgot): a failed read must stop the night."""
    v, _ = register(registry, 1)
    assert registry.lineage(v).excluded_requests == ["r1"]
    run_id = registry.version(v)["run_id"]
    lineage_file = next((tmp_path / "artifacts").rglob(f"{run_id}/artifacts/lineage.json"))
    lineage_file.write_text('{"summary": "truncated by a full disk"')
    with pytest.raises(Exception, match="(?i)json|validation"):
        registry.lineage(v)
    lineage_file.unlink()  # a version registered by hand has no lineage: that is None, not an error
    assert registry.lineage(v) is None


def test_versions_contain_only_requests_they_learned_from(registry, tmp_path):
    """A request that hit only test rows was never trained on: it flags no version. A full
    retrain excludes every request purged before it, whatever its parent held."""
    from jobs.versions import contained_purged
    from pipeline.ops.ledger import Ledger

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    v1, _ = register(registry, 1, batch="init")
    trained, _ = ledger.add(sample_ids=["t1"])
    test_only, _ = ledger.add(sample_ids=["e1"])
    ledger.start_batch("night-1", v1)
    ledger.mark_applied({trained["request_id"]: ["t1"], test_only["request_id"]: []}, 2, "night-1", {})
    ledger.mark_served([trained["request_id"], test_only["request_id"]], 2, "night-1", "served")
    ledger.mark_purged({trained["request_id"]: ["t1"], test_only["request_id"]: []}, "night-1",
                       {test_only["request_id"]: ["e1"]})
    assert [r["request_id"] for r in contained_purged(registry, ledger, v1)] == [trained["request_id"]]


def test_a_version_every_replica_would_refuse_never_becomes_champion(registry):
    """The nightly's check before the alias moves is the replicas' own: a version with NaN
    weights (or a different input shape) is refused on the driver and tagged abandoned."""
    from jobs.nightly_mlflow import serving_check

    v1, _ = register(registry, 1, batch="init")
    registry.set_champion(v1)
    v2, _ = register(registry, 2, parent=v1, batch="night-1")
    serving_check(registry, v2, v1)  # a good one passes
    torch.manual_seed(3)
    broken = build_model("mlp", (4,), 3, hidden=8)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    run = registry.start_run("night-2", {"batch_id": "night-2"})
    v3 = registry.register(run, broken, CARD, registry.lineage(v2).model_copy(update={"batch_id": "night-2"}))
    with pytest.raises(RuntimeError, match="refused by every replica"):
        serving_check(registry, v3, v2)
    assert registry.version(v3)["tags"]["abandoned"].startswith("refused by the serving check")
    assert registry.champion() == v1
