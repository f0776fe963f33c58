"""The nightly batch on digits against the shared local Ray: three nights in a row, a
failed gate, rollback and grace-period deletion, and a crash after every stage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import cli
from jobs.init import run_init
from jobs.nightly import NightlyConfig, run_nightly
from pipeline.datasets.store import read_store
from pipeline.home import Home
from pipeline.ledger import Ledger
from pipeline.ray_train import RayOptions
from pipeline.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def make_deployment(tmp_path_factory, name):
    home = Home(tmp_path_factory.mktemp(name).resolve())
    run_init(home, "digits", RayOptions(), ROOT / "pipeline/configs/digits.yaml", log=lambda *a: None)
    state = home.state()
    return home, Ledger(home.ledger_url), Registry(home.tracking_uri, state["model_name"], home.artifacts)


@pytest.fixture(scope="module")
def deployment(ray_cluster, tmp_path_factory):
    return make_deployment(tmp_path_factory, "nights")


def store_ids(home):
    train, test = read_store(home.root / "datasets" / "digits")
    return set(train.sample_ids.tolist()) | set(test.sample_ids.tolist())


def subject(n):
    return f"digits-train-subj-{n:06d}"


def assert_night_consistent(home, ledger, registry, request_ids, forgotten):
    """Every request purged exactly once; the store holds none of its samples; the champion
    is one complete version; nothing left running, open or locked."""
    batches = set()
    for rid in request_ids:
        rec = ledger.get(rid)
        assert rec["status"] == "purged", rec
        events = [e["event"] for e in ledger.events(rid)]
        assert events.count("applied") == 1 and events.count("purged") == 1 and events.count("audit") == 1, events
        batches.add(rec["batch_id"])
    assert len(batches) == 1
    assert not forgotten & store_ids(home)
    champion = registry.champion()
    registry.load(champion)  # weights exist and match their hash
    assert registry.version(champion)["tags"]["batch_id"] in batches
    same_batch = [v for v in registry.versions() if v["tags"].get("batch_id") in batches]
    assert len(same_batch) == 1, "a batch registered twice"
    assert not [r for r in registry.client.search_runs([registry.experiment_id]) if r.info.status == "RUNNING"]
    assert ledger.open_batch() is None
    assert not list(home.nightly_dir.glob("night-*"))
    with ledger.session() as s:
        from pipeline.ledger import Lock
        assert s.get(Lock, "nightly") is None


def test_three_nights_in_a_row_with_lineage(deployment):
    home, ledger, registry = deployment
    train, _ = read_store(home.root / "datasets" / "digits")
    first = registry.champion()
    versions = []
    for night in range(3):
        a, _ = ledger.add(subject_id=subject(10 * night + 1), reason="GDPR Art. 17")
        ids = [f"digits-train-{300 + 10 * night + i:06d}" for i in range(3)]
        b, _ = ledger.add(sample_ids=ids)
        bad, _ = ledger.add(subject_id=f"no-such-person-{night}")
        dup, created = ledger.add(subject_id=subject(10 * night + 1))
        assert not created and dup["request_id"] == a["request_id"]
        out = run_nightly(home, NightlyConfig(), RayOptions(), log=lambda *a: None)
        assert out["state"] == "done"
        versions.append(out["version"])
        forgotten = set(train.sample_ids[train.subject_ids == subject(10 * night + 1)].tolist()) | set(ids)
        assert_night_consistent(home, ledger, registry, [a["request_id"], b["request_id"]], forgotten)
        rej = ledger.get(bad["request_id"])
        assert rej["status"] == "rejected" and "no samples in the store" in rej["status_reason"]
        tags = registry.version(out["version"])["tags"]
        assert tags["parent_version"] == str(out["version"] - 1) and tags["method"] == "lur"
        assert set(tags["request_ids"].split(",")) == {a["request_id"], b["request_id"]}
        assert int(tags["excluded_requests_count"]) == 2 * (night + 1)
        assert tags["store_snapshot"] and tags["config_hash"] and "UA" in tags
        late, _ = ledger.add(sample_ids=ids[:2])  # asking for purged samples again
        assert late["status"] == "rejected" and "already purged" in late["status_reason"]
        audit = ledger.get(a["request_id"])
        assert audit["model_version"] == str(out["version"]) and audit["forget_accuracy"] is not None
        assert audit["mia"] is not None and audit["served_at"] and audit["purged_at"]
    assert versions == [first + 1, first + 2, first + 3] and registry.champion() == first + 3

    # an MLflow run per night with params, metrics and plots a user can open in the UI
    run = registry.client.get_run(registry.version(first + 3)["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["method"] == "lur"
    assert {"UA", "RA", "TA", "MIA", "parent_TA", "delta_TA"} <= set(run.data.metrics)
    arts = {a.path for a in registry.client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/metrics.png", "plots/per_request.png"} <= arts
    assert {a.path for a in registry.client.list_artifacts(run.info.run_id)} >= {"model", "lineage.json", "evaluation.json"}


def test_failed_gate_leaves_the_champion_and_requests_alone(deployment):
    home, ledger, registry = deployment
    champion, n_versions = registry.champion(), len(registry.versions())
    req, _ = ledger.add(subject_id=subject(200))
    cfg = NightlyConfig()
    cfg.gates.max_ta_drop = -50.0  # TA would have to rise 50 points: impossible
    before = store_ids(home)
    out = run_nightly(home, cfg, RayOptions(), log=lambda *a: None)
    assert out["state"] == "failed" and "ta_drop" in out["reason"]
    assert registry.champion() == champion and len(registry.versions()) == n_versions
    rec = ledger.get(req["request_id"])
    assert rec["status"] == "pending" and "gate failed" in rec["status_reason"]
    assert store_ids(home) == before  # nothing purged
    run = registry.client.get_run(out["run_id"])
    assert run.info.status == "FAILED" and run.data.metrics["gate_ta_drop"] > -50
    # the CLI says so with its own exit code
    assert ledger.open_batch() is None


def test_rollback_refuses_versions_with_purged_data_and_grace_deletes_them(deployment, monkeypatch, capsys):
    home, ledger, registry = deployment
    monkeypatch.setenv("UNLEARN_HOME", str(home.root))
    champion = registry.champion()
    assert cli.main(["rollback"]) == 2  # the parent still holds the last night's purged requests
    assert "contains the data of" in capsys.readouterr().err
    assert registry.champion() == champion
    assert cli.main(["rollback", "--to", "1", "--force"]) == 0
    assert registry.champion() == 1
    forced = [e for e in ledger.events() if e["event"] == "served_again_by_forced_rollback"]
    assert len(forced) == 6  # one per purged request, in its audit trail
    assert cli.main(["rollback", "--to", str(champion)]) == 0  # it excludes everything: allowed
    from jobs.versions import housekeeping

    assert housekeeping(ledger, registry, grace_days=0, log=lambda *a: None) == [1, 2, 3]
    assert registry.load(champion)
    with pytest.raises(Exception, match="deleted"):
        registry.load(1)
    assert cli.main(["rollback", "--to", "1", "--force"]) == 2
    assert cli.main(["versions"]) == 0
    assert "weights deleted" in capsys.readouterr().out


@pytest.mark.parametrize("stage", ["resolve", "unlearn", "evaluate", "gate", "register", "purge"])
def test_a_crash_after_each_stage_recovers_on_rerun(deployment, stage):
    import ray

    home, ledger, registry = deployment
    k = ["resolve", "unlearn", "evaluate", "gate", "register", "purge"].index(stage)
    a, _ = ledger.add(subject_id=subject(400 + 3 * k))  # samples 1200.., clear of the other tests
    ids = [f"digits-train-{900 + 3 * k + i:06d}" for i in range(2)]
    b, _ = ledger.add(sample_ids=ids)
    champion = registry.champion()
    env = {**os.environ, "UNLEARN_HOME": str(home.root), "UNLEARN_TEST_CRASH_AFTER": stage}
    gcs = ray.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "nightly", "--address", gcs], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 75, proc.stdout[-2000:] + proc.stderr[-3000:]
    batch = ledger.open_batch()
    assert batch is not None and batch["state"] == {"resolve": "resolved", "unlearn": "unlearned",
                                                    "evaluate": "evaluated", "gate": "gated",
                                                    "register": "registered", "purge": "purged"}[stage]
    moved = stage in ("register", "purge")
    assert (registry.champion() != champion) == moved  # no champion before registration
    statuses = {ledger.get(r)["status"] for r in (a["request_id"], b["request_id"])}
    assert statuses == ({"purged"} if stage == "purge" else {"applied"} if moved else {"pending"})

    out = run_nightly(home, NightlyConfig(), RayOptions(), log=lambda *a: None)
    assert out["state"] == "done" and out["batch"] == batch["id"]
    train, _ = read_store(home.root / "datasets" / "digits")
    assert_night_consistent(home, ledger, registry, [a["request_id"], b["request_id"]], set(ids))
    assert registry.champion() == champion + 1
