"""Which version every replica serves, counted over the replicas Serve itself runs.

Each replica reports the version it serves to a small named actor (the board), keyed by
the replica id Serve gave it. Whether *every* replica serves a version is answered
against Serve's own list of the deployment's replicas, never against "who reported
lately": a replica still loading, restarting or stuck has not reported the new version,
so the answer is "not yet", and the nightly batch keeps the data until it is.

The same answer is reachable two ways: the app's `GET /model` (the nightly holds its URL
in `$UNLEARN_HOME/serving.json`), and directly from any driver on the cluster
(`replica_versions`), which is how a nightly submitted as a Ray job sees the app.
"""

from __future__ import annotations

import time
from typing import Any

BOARD = "unlearn-serving-board"
NAMESPACE = "unlearn"
APP_NAME = "unlearn"
DEPLOYMENT = "model"
# Replica states in which a replica serves, or is about to (Serve's ReplicaState). A
# STARTING replica may come up with the old version: it counts, and it has not reported.
LIVE_STATES = frozenset({"STARTING", "UPDATING", "RECOVERING", "RUNNING", "PENDING_MIGRATION"})


def every_replica_serves(known: list[str] | None, reports: dict[str, str | None], version: str | None) -> bool:
    """True only when Serve's replica list is known, non-empty, and each one reported `version`.

    Fails closed: an unknown list (Serve unreachable), no replicas, or one replica that
    has not reported (still loading) is False."""
    if not known or version is None:
        return False
    return all(reports.get(r) == str(version) for r in known)


def get_board():
    """The named actor where replicas report the version they serve (created once)."""
    import ray

    @ray.remote(num_cpus=0)
    class Board:
        def __init__(self):
            self.replicas: dict[str, dict[str, Any]] = {}

        def report(self, replica: str, version: str | None, error: str | None) -> None:
            self.replicas[replica] = {"version": version, "error": error, "at": time.time()}

        def entries(self) -> dict[str, dict[str, Any]]:
            return dict(self.replicas)

        def keep_only(self, replicas: list[str]) -> None:
            """Forget replicas Serve no longer runs (the board stays small)."""
            self.replicas = {r: v for r, v in self.replicas.items() if r in set(replicas)}

    return Board.options(name=BOARD, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()


def known_replicas(app: str = APP_NAME, deployment: str = DEPLOYMENT) -> list[str] | None:
    """The ids of the deployment's live replicas as Serve's controller lists them; None when
    that cannot be read (no controller, an error), [] when the app or deployment is absent.

    Serve has no public call for replica ids (`serve.status()` gives counts only), so this
    reads the controller's instance details, the record `serve status` itself prints."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client(raise_if_no_controller_running=False)
        if client is None:
            return []
        details = client.get_serve_details()
    except Exception:
        return None
    dep = ((details.get("applications") or {}).get(app) or {}).get("deployments", {}).get(deployment)
    if not dep:
        return []
    return sorted(r["replica_id"] for r in dep.get("replicas", []) if r.get("state") in LIVE_STATES)


def app_exists(app: str = APP_NAME) -> bool | None:
    """Whether the connected cluster runs a Serve application named `app` (None: cannot tell)."""
    try:
        from ray import serve

        return app in serve.status().applications
    except Exception:
        return None


def replica_versions(app: str = APP_NAME, deployment: str = DEPLOYMENT, timeout: float = 10.0,
                     board=None) -> dict[str, Any]:
    """{"known": [ids] | None, "reports": {id: version}, "errors": {id: error}}: Serve's
    replica list and what the board holds, read on the cluster (`board`: a handle the
    caller already has). Board entries of replicas Serve no longer runs are dropped."""
    import ray

    known = known_replicas(app, deployment)
    try:
        board = board or ray.get_actor(BOARD, namespace=NAMESPACE)
        entries = ray.get(board.entries.remote(), timeout=timeout)
        if known:
            board.keep_only.remote(known)
    except Exception:  # no board yet (no replica reported) or unreachable: nobody confirmed anything
        entries = {}
    return {"known": known, "reports": {r: e["version"] for r, e in entries.items()},
            "errors": {r: e["error"] for r, e in entries.items() if e.get("error")}}
