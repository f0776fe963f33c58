"""`unlearn demo`: the whole story on the embedded default, in minutes, leaving nothing running.

    unlearn demo                        # Fashion-MNIST when installed, else digits
    unlearn demo --dataset digits       # the fastest

Local Ray, SQLite MLflow and ledger under $UNLEARN_HOME (default ./.unlearn-demo, wiped
first): train and register the original model on Ray, serve it, file deletion requests
over HTTP, run the nightly batch, watch the served version change, check the purge, and
print what changed and where to look next.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UserError
from pipeline.ops.home import Home

CONFIGS = Path(__file__).resolve().parents[1] / "pipeline" / "configs"


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


def _port(preferred: int) -> int:
    from jobs.serve import port_free

    if port_free("127.0.0.1", preferred):
        return preferred
    with socket.socket() as s:  # any free one
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    """How the user can call a console script: bare when it is on PATH, else the path of
    the one beside this interpreter (`make demo` runs from .venv without activating it)."""
    here = Path(sys.executable).parent / name
    if shutil.which(name) == str(here) or not here.exists():
        return name
    return os.path.relpath(here) if not os.path.relpath(here).startswith("..") else str(here)


def pick_dataset(requested: str | None) -> str:
    if requested:
        return requested
    from pipeline.datasets.readers import FASHION_MNIST_DIR

    return "fashion-mnist" if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists() else "digits"


def run_demo(root: Path, dataset: str | None, people: int, workers: int, port: int, log=print) -> dict[str, Any]:
    import ray
    from ray import serve

    from jobs.init import run_init
    from jobs.nightly import run_nightly
    from jobs.serve import start_app, write_serving_info
    from pipeline.datasets.store import read_store
    from pipeline.ops.nightly_config import NightlyConfig
    from pipeline.ray.train import RayOptions
    from serving.token import resolve_token

    dataset = pick_dataset(dataset)
    config = CONFIGS / ("fashion-mnist-demo.yaml" if dataset == "fashion-mnist" else f"{dataset}.yaml")
    if not config.exists():
        raise UserError(f"no demo config for {dataset!r}: use fashion-mnist or digits")
    if root.exists():
        if not (root / "home.json").exists() and any(root.iterdir()):
            raise UserError(f"{root} exists and is not a demo home; pass --home to an empty directory")
        shutil.rmtree(root)
    home = Home(root.resolve())
    times: dict[str, float] = {}
    opts = RayOptions(workers=workers)
    t0 = t = time.perf_counter()
    try:
        log(f"1/5 unlearn init --dataset {dataset}: ingest, train the original on Ray, register v1 @champion")
        run_init(home, dataset, opts, config, log=lambda m: log("    " + m))
        times["init"] = time.perf_counter() - t
        registry = home.registry()

        t = time.perf_counter()
        port = _port(port)
        log(f"2/5 unlearn serve: Ray Serve on 127.0.0.1:{port}, 1 replica")
        url = start_app(home, "127.0.0.1", port, replicas=1, poll_s=1.0, max_batch_size=32,
                        log=lambda m: log("    " + m))
        write_serving_info(home, url)
        times["serve"] = time.perf_counter() - t
        token = resolve_token(home.root)
        train, test = read_store(home.store())
        probe = test.features[:8].tolist()
        _, before = _http("POST", f"{url}/predict", {"instances": probe})
        log(f"    /predict answers from v{before['model_version']}: {before['predictions']}")

        t = time.perf_counter()
        subjects = list(np.random.default_rng(0).choice(np.unique(train.subject_ids), people, replace=False))
        log(f"3/5 {people} people ask to be forgotten: POST /deletions with the bearer token")
        ids = []
        for s in subjects:
            status, out = _http("POST", f"{url}/deletions", {"subject_id": str(s), "reason": "GDPR Art. 17"}, token)
            ids.append(out["request_id"])
        forgotten = set(train.sample_ids[np.isin(train.subject_ids, subjects)].tolist())
        log(f"    {len(ids)} requests pending ({len(forgotten)} samples), e.g. {ids[0]}")

        log("4/5 unlearn nightly: unlearn on Ray from the champion, gate, register, swap, purge")
        out = run_nightly(home, NightlyConfig(), opts, log=lambda m: log("    " + m))
        times["nightly"] = time.perf_counter() - t
        if out["state"] != "done":
            raise UserError(f"the nightly ended in state {out['state']}: {out.get('reason', '')}")

        log("5/5 what the application sees now")
        _, model = _http("GET", f"{url}/model")
        _, after = _http("POST", f"{url}/predict", {"instances": probe})
        _, record = _http("GET", f"{url}/deletions/{ids[0]}", token=token)
        train_after, _ = read_store(home.store())
        left = forgotten & set(train_after.sample_ids.tolist())
        run = registry.client.get_run(registry.version(out["version"])["run_id"])
        m = run.data.metrics
        rows = [("UA (forgotten samples)", m["parent_UA"], m["UA"]), ("RA (retained)", m["parent_RA"], m["RA"]),
                ("TA (test)", m["parent_TA"], m["TA"]), ("MIA-Efficacy", m["parent_MIA"], m["MIA"])]
        summary = {"dataset": dataset, "versions": [int(before["model_version"]), int(model["version"])],
                   "served_before": before["model_version"], "served_after": after["model_version"],
                   "request_status": record["status"], "forgotten_in_store": len(left), "times": times,
                   "metrics": {r[0]: {"before": r[1], "after": r[2]} for r in rows}}
        log("")
        log(f"  served version   v{before['model_version']} -> v{after['model_version']} "
            f"(all replicas: {model['all_replicas']}); request {ids[0]}: {record['status']}")
        log(f"  store            {len(forgotten)} forgotten samples, {len(left)} left in the store")
        log(f"  {'metric':<24} {'v' + before['model_version']:>8} {'v' + after['model_version']:>8}")
        for name, b, a in rows:
            log(f"  {name:<24} {b:8.2f} {a:8.2f}")
        log(f"  times            init {times['init']:.0f} s, serve {times['serve']:.0f} s, "
            f"requests + nightly {times['nightly']:.0f} s, total {time.perf_counter() - t0:.0f} s")
        log("")
        log("where to look next:")
        log(f"  {_tool('mlflow')} ui --backend-store-uri {home.tracking_uri}      runs, plots, versions, lineage")
        log(f"  UNLEARN_HOME={home.root} {_tool('unlearn')} audit {ids[0]}")
        log(f"  UNLEARN_HOME={home.root} {_tool('unlearn')} versions")
        if left or after["model_version"] == before["model_version"] or record["status"] != "purged":
            raise UserError("the demo did not end as it should (see above)")
        return summary
    finally:
        (home.root / "serving.json").unlink(missing_ok=True)
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
