"""Ray Serve against the shared local Ray: bad input on every route, hot swap (good and
bad versions), and the user's whole path: POST a deletion, `unlearn nightly`, see it served."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PORT = 8137
URL = f"http://127.0.0.1:{PORT}"
pytestmark = pytest.mark.timeout(600)


def call(method, path, body=None, token=None, raw=None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(URL + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, {"raw": text[:200]}


@pytest.fixture(scope="module")
def served(deployment):
    from ray import serve

    from jobs.serve import start_app, write_serving_info
    from serving.token import resolve_token

    home, ledger, registry = deployment
    token = resolve_token(home.root)
    start_app(home, "127.0.0.1", PORT, replicas=2, poll_s=0.5, max_batch_size=16, log=lambda *a: None)
    write_serving_info(home, URL)
    yield home, ledger, registry, token
    (home.root / "serving.json").unlink(missing_ok=True)
    serve.shutdown()


def test_token_file_is_private(served):
    home, *_ = served
    assert oct((home.root / "token").stat().st_mode & 0o777) == "0o600"


def digits_instances(home, n=16):
    from pipeline.datasets.store import read_store

    _, test = read_store(home.root / "datasets" / "digits")
    return test.features[:n].tolist(), test


def wait_all_replicas(version, timeout=10.0):
    """Seconds until every replica reports `version` (the swap bar: within 10 s)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status, m = call("GET", "/model")
        if status == 200 and m["all_replicas"] and m["version"] == str(version) and len(m["replicas"]) == 2:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"replicas not all on v{version} within {timeout}s: {m}")


def test_predictions_match_the_champion_and_name_its_version(served):
    home, _, registry, _ = served
    x, _ = digits_instances(home)
    model, card = registry.load(registry.champion())
    expected = model.eval()(torch.tensor(x).reshape(len(x), *card["input_shape"])).argmax(1).tolist()
    status, out = call("POST", "/predict", {"instances": x})
    assert status == 200 and out["predictions"] == expected and out["model_version"] == str(registry.champion())


def test_mlflow_loads_and_serves_the_champion_as_a_pyfunc_model(served, monkeypatch, tmp_path):
    """MLflow's own tooling opens a registered version: `mlflow.pyfunc.load_model` predicts
    what `/predict` answers, and `mlflow models serve` answers the same payload on loopback
    (a separate process, with the model's own shipped code first on its path)."""
    import socket

    import mlflow

    home, _, registry, _ = served
    x, _ = digits_instances(home)
    status, out = call("POST", "/predict", {"instances": x})
    assert status == 200
    uri = f"models:/{registry.name}@champion"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    # downloaded into the test's folder: a copy left in /tmp would outlive the weights' deletion
    model = mlflow.pyfunc.load_model(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "m")))
    assert model.predict(np.asarray(x, dtype=np.float32)).tolist() == out["predictions"]
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, len(x[0]))
    example = json.loads((Path(mlflow.artifacts.download_artifacts(f"{uri}/input_example.json", dst_path=str(tmp_path)))
                          ).read_text())
    rows = np.asarray(example.get("inputs", example.get("data")) if isinstance(example, dict) else example)
    assert rows.shape[1] == len(x[0]) and not rows.any()  # synthetic: no one's sample inside a version

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # as from an activated environment: MLflow execs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", uri,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:] if proc.poll() else ""
            time.sleep(0.5)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps({"instances": x}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["predictions"] == out["predictions"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def malformed(token, n_features):
    good = [[0.5] * n_features]
    cases = []
    for body in [b"", b"{", b"nul", b"[]", b"42", b'"x"', b"\xff\xfe", b'{"instances": NaN}',
                 b'{"instances": [[Infinity]]}', b'{"instances": [[-Infinity]]}', b'{"instances": [[1e999]]}']:
        cases.append(("POST", "/predict", None, body))
    for instances in [None, [], {}, "abc", 1, [1, 2], [[]], [["a"] * n_features], [[None] * n_features],
                      [[0.5] * (n_features - 1)], [[0.5] * (n_features + 1)], [[0.5] * n_features, [0.5]],
                      [[[0.5]] * n_features], [[True] * n_features], [[0.5] * n_features] * 1025,
                      [[1e39] * n_features], [["0.5"] * n_features], [[10 ** 400] + [0.5] * (n_features - 1)],
                      [[0.5] * (n_features - 1) + ["1"]]]:
        cases.append(("POST", "/predict", {"instances": instances}, None))
    cases += [("POST", "/predict", {"instances": good, "extra": 1}, None), ("POST", "/predict", {"x": good}, None),
              ("POST", "/predict", None, b'{"instances": [' + b"[0.5]," * 2_000_000 + b"[0.5]]}"),
              ("POST", "/predict", None, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),  # RecursionError
              ("POST", "/predict", None, b'{"instances": [[' + b"9" * 5000 + b"]]}")]  # an int past any float
    deletion_bodies = [{}, {"subject_id": None}, {"subject_id": ""}, {"subject_id": 5}, {"subject_id": ["a"]},
                       {"subject_id": "x" * 257}, {"sample_ids": []}, {"sample_ids": "a,b"}, {"sample_ids": [1, 2]},
                       {"sample_ids": ["a", None]}, {"sample_ids": ["a", "a"]}, {"sample_ids": ["ok"] * 10_001},
                       {"subject_id": "a", "sample_ids": ["b"]}, {"subject_id": "a", "extra": 1},
                       {"subject_id": "a\u0000b"}, {"subject_id": " a"}, {"subject_id": "a", "reason": 5},
                       {"subject_id": "a", "reason": "r" * 1001}, {"sample_ids": [f"s{i}" for i in range(100_000)]},
                       {"subject_id": "\ud800"}, [], "subject", 3, {"sample_ids": [["a"]]}, {"sample_ids": {"a": 1}},
                       {"subject_id": {"a": 1}}, {"subject_id": 1.5}, {"subject_id": True},
                       {"subject_id": "a", "idempotency_key": ""}, {"subject_id": "a", "idempotency_key": "k" * 129},
                       {"sample_ids": ["\u202e", "a\nb"]}]
    for body in deletion_bodies:
        cases.append(("POST", "/deletions", body, None))
    for raw in [b"", b"{", b"\xff", b'{"subject_id": NaN}', b'{"subject_id": "a"' + b" " * (2 * 1024 * 1024) + b"}"]:
        cases.append(("POST", "/deletions", None, raw))
    cases = [(m, p, b, r, token) for m, p, b, r in cases]
    # wrong or missing tokens on every protected route, with valid and odd bodies
    for bad_token in [None, "", "wrong", token + "x", token[:-1], "Bearer", ("🙂" * 10).encode().decode("latin-1"), token.upper()]:
        cases.append(("POST", "/deletions", {"subject_id": "digits-train-subj-000001"}, None, bad_token))
        cases.append(("GET", "/deletions/del-0000", None, None, bad_token))
        cases.append(("POST", "/model/refresh", None, None, bad_token))
    for rid in ["nope", "del-" + "0" * 200, "%00", "..%2F..%2Fetc", "🙂", "del-1234567890abcdef", "' OR 1=1 --",
                "名前", "\u202e", "ü"]:
        cases.append(("GET", f"/deletions/{urllib.request.quote(rid)}", None, None, token))
    for method, path in [("GET", "/predict"), ("PUT", "/deletions"), ("DELETE", "/model"), ("GET", "/nope"),
                         ("POST", "/healthz")]:
        cases.append((method, path, None, b"{}", token))
    return cases


def test_malformed_requests_get_4xx_and_change_nothing(served):
    home, ledger, registry, token = served
    x, _ = digits_instances(home, 4)
    status, before_pred = call("POST", "/predict", {"instances": x})
    before = (ledger.list(), len(ledger.events()))
    cases = malformed(token, len(x[0]))
    # each case twice: once as is, once with a header that claims another content type
    results = []
    for i, (method, path, body, raw, tok) in enumerate(cases * 2):
        headers = {"Content-Type": "text/plain"} if i >= len(cases) else None
        status, out = call(method, path, body=body, raw=raw, token=tok, headers=headers)
        results.append((status, method, path, str(body)[:60] if raw is None else raw[:40]))
    assert len(results) >= 200
    server_errors = [r for r in results if r[0] >= 500]
    assert not server_errors, server_errors[:5]
    assert all(400 <= r[0] < 500 for r in results), [r for r in results if r[0] < 400][:5]
    assert (ledger.list(), len(ledger.events())) == before  # nothing from invalid requests
    status, after_pred = call("POST", "/predict", {"instances": x})
    assert status == 200 and after_pred == before_pred  # still serving correct predictions


def nudged_version(registry, base, batch_id):
    """A good new version: `base`'s weights, nudged; (version, model, card, lineage, run)."""
    model, card = registry.load(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.001)
    run = registry.start_run(batch_id, {"batch_id": batch_id})
    lineage = registry.lineage(base).model_copy(update={"batch_id": batch_id, "parent_version": base})
    return registry.register(run, model, card, lineage), model, card, lineage, run


def test_hot_swap_follows_the_alias_and_refuses_a_broken_version(served):
    home, _, registry, token = served
    champion = registry.champion()
    good, model, card, lineage, run = nudged_version(registry, champion, "swap-test")
    registry.set_champion(good)
    assert wait_all_replicas(good) < 10
    # "every replica" means Serve's own replica list: /model and a driver on the cluster agree
    # on it, and a board entry of a replica Serve no longer runs counts for nothing
    from serving.board import every_replica_serves, get_board, known_replicas, replica_versions

    known = known_replicas()
    assert len(known) == 2 and sorted(call("GET", "/model")[1]["replicas"]) == known
    get_board().report.remote("a-replica-serve-stopped", str(champion), None)
    m = call("GET", "/model")[1]
    assert m["all_replicas"] and "a-replica-serve-stopped" not in m["replicas"]
    rv = replica_versions()
    assert every_replica_serves(rv["known"], rv["reports"], str(good))
    assert not every_replica_serves(rv["known"] + ["a-replica-still-loading"], rv["reports"], str(good))
    x, _ = digits_instances(home, 4)
    assert call("POST", "/predict", {"instances": x})[1]["model_version"] == str(good)
    # a broken version (NaN weights) is never served; /healthz says why
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    registry.end_run(run)
    run = registry.start_run("swap-test-bad", {"batch_id": "swap-test-bad"})
    bad = registry.register(run, model, card, lineage.model_copy(
        update={"batch_id": "swap-test-bad", "parent_version": None, "excluded_requests": []}))
    registry.end_run(run)
    registry.set_champion(bad)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, health = call("GET", "/healthz")
        if health["status"] == "degraded":
            break
        time.sleep(0.2)
    assert health["status"] == "degraded" and "NaN" in health["last_error"] and health["model_version"] == str(good)
    status, out = call("POST", "/predict", {"instances": x})
    assert status == 200 and out["model_version"] == str(good)
    registry.set_champion(good)
    registry.set_version_tag(bad, "abandoned", "test: NaN weights")
    deadline = time.monotonic() + 10  # every replica healthy again (requests spread over both)
    while time.monotonic() < deadline:
        healths = [call("GET", "/healthz")[1] for _ in range(6)]
        if all(h["status"] == "ok" for h in healths):
            break
        time.sleep(0.3)
    assert all(h["status"] == "ok" for h in healths), healths


def test_an_unloadable_champion_causes_no_outage_and_loads_once_it_can(served):
    """The champion's weights file is unreadable for a while (a storage blip): the replicas
    keep serving the old version, a replica restarted meanwhile falls back to the newest
    version that loads instead of restart-looping, and once the file is back every
    replica loads the champion without a new alias move."""
    import ray

    from serving.board import known_replicas

    home, _, registry, token = served
    good = registry.champion()
    blip, *_, run = nudged_version(registry, good, "blip-test")
    registry.end_run(run)
    weights = next(home.artifacts.rglob(f"*{registry.version(blip)['run_id']}*/**/model.safetensors"))
    saved = weights.read_bytes()
    weights.write_bytes(b"\0" * len(saved))  # unreadable: its SHA-256 no longer matches
    x, _ = digits_instances(home, 4)
    try:
        registry.set_champion(blip)
        call("POST", "/model/refresh", token=token)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and call("GET", "/healthz")[1]["status"] != "degraded":
            time.sleep(0.2)
        assert call("POST", "/predict", {"instances": x})[1]["model_version"] == str(good)
        # a replica restarts while the champion cannot be loaded: it comes up on v(good)
        victim = known_replicas()[0]
        from ray.serve.context import _get_global_client

        details = _get_global_client().get_serve_details()["applications"]["unlearn"]["deployments"]["model"]
        actor = next(r["actor_name"] for r in details["replicas"] if r["replica_id"] == victim)
        ray.kill(ray.get_actor(actor, namespace="serve"), no_restart=True)
        failures = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, out = call("POST", "/predict", {"instances": x})
            failures += status != 200
            known = known_replicas()
            if victim not in known and len(known) == 2 and call("GET", "/model")[1]["all_replicas"]:
                break
            time.sleep(0.3)
        assert victim not in known_replicas() and call("GET", "/model")[1]["version"] == str(good)
        assert failures == 0
    finally:
        weights.write_bytes(saved)  # the blip is over
    call("POST", "/model/refresh", token=token)
    assert wait_all_replicas(blip, timeout=30) < 30  # loaded without moving the alias again
    assert call("POST", "/predict", {"instances": x})[1]["model_version"] == str(blip)


@pytest.mark.slow
def test_a_user_deletes_over_http_and_the_nightly_serves_it(served):
    import ray

    home, ledger, registry, token = served
    status, out = call("POST", "/deletions", {"subject_id": "digits-train-subj-000470", "reason": "GDPR Art. 17"},
                       token=token)
    assert status == 202 and out["status"] == "pending"
    rid = out["request_id"]
    assert call("POST", "/deletions", {"subject_id": "digits-train-subj-000470"}, token=token)[1]["request_id"] == rid
    before = call("GET", "/model")[1]["version"]
    env = {**os.environ, "UNLEARN_HOME": str(home.root)}
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "nightly", "--address",
                           ray.get_runtime_context().gcs_address], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status, m = call("GET", "/model")
    assert m["version"] != before and m["version"] == str(registry.champion()) and m["all_replicas"]
    assert m["parent_version"] == before
    status, d = call("GET", f"/deletions/{rid}", token=token)
    assert status == 200 and d["status"] == "purged" and d["model_version"] == m["version"] and d["served_at"]
    x, _ = digits_instances(home, 4)
    assert call("POST", "/predict", {"instances": x})[1]["model_version"] == m["version"]
    events = [e["event"] for e in ledger.events(rid)]
    served_event = [e for e in ledger.events(rid) if e["event"] == "served"][0]
    assert served_event["detail"]["how"] == "served" and events.index("served") < events.index("purged")


def test_a_taken_port_is_a_clear_error(served):
    from jobs.serve import start_app
    from pipeline.errors import UserError

    home, *_ = served
    with pytest.raises(UserError, match=f"port {PORT} on 127.0.0.1 is taken"):
        start_app(home, "127.0.0.1", PORT, replicas=1, poll_s=1.0, max_batch_size=8, log=lambda *a: None)
