"""Proof, before any purge, that a registered version is live wherever this deployment serves.

The nightly deletes a person's samples only after one of two things is *proven*:

- **served**: every replica Serve runs for the app reports the new version (asked
  through the app's `GET /model`, or, on a cluster, through Serve's controller and the
  replicas' board directly: `serving.board`);
- **nothing serving**: the server named in `$UNLEARN_HOME/serving.json` is verifiably
  gone (its port refuses connections *and* its pid is dead on this same host), or the
  cluster the nightly runs on has no Serve application `unlearn`, or neither a server
  file nor a cluster exists to serve from.

Anything else (a timeout, an HTTP 5xx, an answer that is not JSON, a replica still on
the parent, a server file from another host) proves nothing: the verdict is
*unconfirmed*, the requests stay `applied`, and the nightly exits with its own code so a
rerun finishes once serving recovers.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from jobs.serve import serving_info
from pipeline.ops.home import Home
from pipeline.ops.ledger import pid_alive

SERVED = "served"
NOTHING_SERVING = "nothing serving"


@dataclass(frozen=True)
class Verdict:
    outcome: str | None  # SERVED, NOTHING_SERVING, or None: unconfirmed (purge nothing)
    why: str


def wait_until_served(home: Home, version: int, timeout_s: float, log=print, address: str | None = None,
                      poll_s: float = 1.0, probe_timeout_s: float = 5.0) -> Verdict:
    """Wait up to `timeout_s` for proof that `version` is served everywhere, or that nothing serves."""
    info = serving_info(home)
    on_cluster = _cluster_named(address)
    if info is not None:
        verdict = _wait_http(home, info, version, timeout_s, poll_s, probe_timeout_s)
        if verdict.outcome != NOTHING_SERVING or not on_cluster:
            return verdict
        log(f"{verdict.why}; checking the cluster for the Serve application too")
    if on_cluster:
        return _wait_cluster(version, timeout_s, address, poll_s)
    return Verdict(NOTHING_SERVING, f"no server is registered in {home.root / 'serving.json'} and no Ray cluster "
                                    f"was named (--address / RAY_ADDRESS)")


def _cluster_named(address: str | None) -> bool:
    """A cluster to look for the Serve app on: one was named, or this process is on one."""
    ray = sys.modules.get("ray")  # not imported means not connected: no need to import it to know
    return bool(address or os.environ.get("RAY_ADDRESS")) or bool(ray and ray.is_initialized())


def _refused(e: BaseException) -> bool:
    return isinstance(e, ConnectionRefusedError) or isinstance(getattr(e, "reason", None), ConnectionRefusedError)


def proven_dead(info: dict[str, Any]) -> bool:
    """The server of `serving.json` is gone: written on this host, and its pid is not running.
    A file without a host (or from another machine) proves nothing."""
    pid = info.get("pid")
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0 and not pid_alive(pid)


def _refresh(home: Home, url: str, timeout_s: float) -> None:
    """Tell the replicas to check the alias now rather than at their next poll (best effort)."""
    from pipeline.errors import UserError
    from serving.token import existing_token

    try:
        token = existing_token(home.root)
    except UserError:
        token = None
    if token is None:
        return  # no token to present; the replicas' own polling still picks the version up
    req = urllib.request.Request(f"{url}/model/refresh", method="POST", headers={"Authorization": f"Bearer {token}"})
    try:
        urllib.request.urlopen(req, timeout=timeout_s).close()
    except (urllib.error.URLError, OSError):
        pass


def _wait_http(home: Home, info: dict[str, Any], version: int, timeout_s: float, poll_s: float,
               probe_timeout_s: float) -> Verdict:
    url = str(info.get("url", "")).rstrip("/")
    _refresh(home, url, probe_timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/model", timeout=probe_timeout_s) as r:
                live = json.loads(r.read())
            if not isinstance(live, dict):
                raise ValueError("not a JSON object")
            if str(live.get("version")) == str(version) and live.get("all_replicas") is True:
                return Verdict(SERVED, f"every replica at {url} serves v{version}")
            last = f"serving at {url} reports v{live.get('version')} (replicas: {live.get('replicas')})"
        except urllib.error.HTTPError as e:
            last = f"serving at {url} answered HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            if _refused(e) and proven_dead(info):
                return Verdict(NOTHING_SERVING, f"the server at {url} (pid {info['pid']}) is gone")
            last = f"serving at {url} did not answer: {getattr(e, 'reason', e)}"
        except ValueError as e:
            last = f"serving at {url} answered something that is not its /model record: {e}"
        if time.monotonic() > deadline:
            return Verdict(None, last)
        time.sleep(poll_s)


def _wait_cluster(version: int, timeout_s: float, address: str | None, poll_s: float) -> Verdict:
    from pipeline.ray.cluster import connect
    from serving.board import APP_NAME, app_exists, every_replica_serves, replica_versions

    connect(address)
    exists = app_exists()
    if exists is False:
        return Verdict(NOTHING_SERVING, f"the Ray cluster runs no Serve application {APP_NAME!r}")
    deadline = time.monotonic() + timeout_s
    while True:
        if exists is None:
            last = "cannot read Serve's status on the cluster"
        else:
            rv = replica_versions()
            if every_replica_serves(rv["known"], rv["reports"], str(version)):
                return Verdict(SERVED, f"every replica of Serve application {APP_NAME!r} serves v{version}")
            last = (f"Serve application {APP_NAME!r}: replicas {rv['known']} report "
                    f"{ {r: rv['reports'].get(r) for r in rv['known'] or []} }")
        if time.monotonic() > deadline:
            return Verdict(None, last)
        time.sleep(poll_s)
        exists = app_exists()
        if exists is False:
            return Verdict(NOTHING_SERVING, f"the Serve application {APP_NAME!r} is gone from the cluster")
