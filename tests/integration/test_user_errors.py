"""A user mistake against a real deployment ends with one line and a non-zero exit, and
changes nothing: wrong or unreachable MLflow, a mistyped ledger URL, an unreachable Ray
cluster, no champion yet, unknown ids and versions. Each runs the CLI in this process
(`jobs.cli.main`); the ones marked `subprocess` also as a real `python -m jobs.cli`."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


CLEAN = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "UNLEARN_LEDGER_URL")


def unlearn(home, *args, **env):
    full = {k: v for k, v in os.environ.items() if k not in CLEAN}
    full.update(UNLEARN_HOME=str(home.root), OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, env=full,
                          cwd=ROOT, timeout=240)


@pytest.fixture
def in_process(run_cli, monkeypatch):
    """`unlearn ARGS` through cli.main, with the deployment's home and only `env` set."""
    def run(home, *args, **env):
        for k in CLEAN:
            monkeypatch.delenv(k, raising=False)
        return run_cli(*args, env={"UNLEARN_HOME": str(home.root), **env}, cwd=ROOT)
    return run


def snapshot(home, ledger, registry):
    """What a mistake must not change: requests, events, batches, locks, versions, the
    champion, the store's bytes and the files of the home."""
    from pipeline.ops.ledger import Lock

    with ledger.session() as s:
        locks = s.query(Lock).count()
    store = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((home.root / "datasets" / "digits").glob("*.parquet"))}
    files = sorted(str(p.relative_to(home.root)) for p in home.root.rglob("*")
                   if "ray_results" not in p.parts and not p.name.endswith(("-wal", "-shm", "-journal")))
    return json.dumps({"requests": ledger.list(), "events": ledger.events(), "batches": ledger.batches(),
                       "locks": locks, "champion": registry.champion(), "versions": len(registry.versions()),
                       "store": store, "files": files}, default=str, sort_keys=True)


def assert_one_line(r, match):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert match in r.stderr, r.stderr


@pytest.fixture
def pending(deployment):
    """One pending request for the duration of a test, rejected afterwards so that the
    nightly tests never see it."""
    import uuid

    home, ledger, _ = deployment
    rec, _ = ledger.add(subject_id=f"user-errors-{uuid.uuid4().hex[:8]}", reason="test")
    yield rec["request_id"]
    ledger.reject({rec["request_id"]: "test fixture cleaned up"})


SUBPROCESS = pytest.mark.subprocess


@pytest.mark.parametrize("env,args,match", [
    pytest.param({"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, ["versions"],
                 "cannot reach MLflow at 'http://127.0.0.1:1'", marks=SUBPROCESS),
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, ["nightly"], "cannot reach MLflow"),
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, ["rollback"], "cannot reach MLflow"),
    ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, ["serve"], "cannot reach MLflow"),
    ({"MLFLOW_TRACKING_URI": "sqlite:////nonexistent/mlflow.db"}, ["nightly"], "no MLflow store at /nonexistent"),
    ({"MLFLOW_TRACKING_URI": "nosuchscheme://x"}, ["versions"], "MLflow"),
    ({"UNLEARN_LEDGER_URL": "sqlite:////nonexistent/ledger.db"}, ["request", "list"], "no ledger at /nonexistent"),
    ({"UNLEARN_LEDGER_URL": "sqlite:////nonexistent/ledger.db"}, ["nightly"], "no ledger at"),
    ({}, ["nightly", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    pytest.param({"RAY_ADDRESS": "127.0.0.1:1"}, ["nightly"], "cannot reach the Ray cluster at 127.0.0.1:1",
                 marks=SUBPROCESS),
    ({}, ["serve", "--address", "127.0.0.1:1", "--port", "8139"], "cannot reach the Ray cluster"),
    ({}, ["audit", "del-doesnotexist"], "no deletion request 'del-doesnotexist'"),
    ({}, ["rollback", "--to", "999"], "no version 999"),
    ({}, ["request", "list", "--status", "gone"], "status"),
    ({}, ["nightly", "--config", "/nonexistent.yaml"], "--config /nonexistent.yaml not found"),
])
def test_a_mistake_is_one_line_and_changes_nothing(deployment, pending, in_process, request, env, args, match):
    home, ledger, registry = deployment
    before = snapshot(home, ledger, registry)
    assert_one_line(in_process(home, *args, **env), match)
    assert snapshot(home, ledger, registry) == before
    if request.node.get_closest_marker("subprocess"):
        assert_one_line(unlearn(home, *args, **env), match)
        assert snapshot(home, ledger, registry) == before
    assert ledger.get(pending)["status"] == "pending" and ledger.open_batch() is None


def test_no_champion_yet_is_one_line(deployment, pending, in_process, tmp_path):
    """MLFLOW_TRACKING_URI at a real MLflow store where this model has no champion (a new
    server, say): every command that needs the champion says so."""
    from pipeline.ops.registry import Registry

    home, ledger, registry = deployment
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    Registry(uri, "some-other-model", tmp_path / "artifacts")  # a real, empty-for-us store
    before = snapshot(home, ledger, registry)
    for args in (["nightly"], ["serve", "--port", "8139"], ["rollback"], ["versions"]):
        assert_one_line(in_process(home, *args, MLFLOW_TRACKING_URI=uri), "no champion model yet")
    assert snapshot(home, ledger, registry) == before
