"""The nightly's proof before a purge (`jobs.served`): against a real local HTTP server that
answers 5xx, hangs, reports the parent, answers garbage or is gone. Only a confirmed
version or a proven-dead server may let a purge through; everything else is unconfirmed."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from jobs.serve import write_serving_info
from jobs.served import NOTHING_SERVING, SERVED, proven_dead, wait_until_served
from pipeline.ops.home import Home
from serving.board import every_replica_serves


@pytest.fixture
def home(tmp_path, monkeypatch):
    import jobs.served

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("UNLEARN_TOKEN", raising=False)
    # These cases are about the server file's proof. In `make test` this process is also
    # on the integration tests' local Ray, which would add the cluster's proof (tested there).
    monkeypatch.setattr(jobs.served, "_cluster_named", lambda address: False)
    return Home(tmp_path)


@pytest.fixture
def fake(home, fake_serving):
    write_serving_info(home, fake_serving.url)
    return fake_serving


def wait(home, version=7, timeout_s=0.0):
    return wait_until_served(home, version, timeout_s, log=lambda *a: None, poll_s=0.05, probe_timeout_s=0.5)


def test_every_replica_must_report_the_version_over_serves_own_list():
    assert every_replica_serves(["a", "b"], {"a": "7", "b": "7"}, "7")
    assert not every_replica_serves(["a", "b"], {"a": "7"}, "7")  # b is still loading: not yet
    assert not every_replica_serves(["a", "b"], {"a": "7", "b": "6"}, "7")  # b serves the parent
    assert every_replica_serves(["a"], {"a": "7", "gone": "6"}, "7")  # a replica Serve no longer runs
    assert not every_replica_serves(None, {"a": "7"}, "7")  # Serve's list unreadable: fail closed
    assert not every_replica_serves([], {}, "7")
    assert not every_replica_serves(["a"], {"a": None}, None)


def test_confirmed_on_every_replica_is_served(home, fake):
    fake.body = {"version": "7", "all_replicas": True, "replicas": {"a": "7"}}
    v = wait(home)
    assert v.outcome == SERVED and fake.refreshes == 0  # no token exists: none is minted to call refresh
    assert not (home.root / "token").exists()


@pytest.mark.parametrize("status, body, delay", [
    (503, {"error": "overloaded"}, 0.0),            # 5xx
    (500, b"<html>Internal Server Error</html>", 0.0),
    (200, {"version": "6", "all_replicas": True}, 0.0),   # still the parent
    (200, {"version": "7", "all_replicas": False}, 0.0),  # one replica not yet
    (200, {"version": "7"}, 0.0),                          # no replica count at all
    (200, b"not json", 0.0),
    (200, b"[1, 2]", 0.0),
    (200, {"version": "7", "all_replicas": True}, 1.5),   # too slow to answer (read timeout)
])
def test_anything_short_of_confirmation_is_unconfirmed(home, fake, status, body, delay):
    fake.status, fake.body, fake.delay = status, body, delay
    v = wait(home)
    assert v.outcome is None, v
    assert fake.url in v.why


def test_recovery_within_the_wait_is_served(home, fake):
    fake.status, fake.body = 503, {"error": "starting"}
    threading.Timer(0.3, lambda: setattr(fake, "status", 200) or setattr(
        fake, "body", {"version": "7", "all_replicas": True})).start()
    assert wait(home, timeout_s=10).outcome == SERVED


def test_a_token_that_exists_is_used_to_ask_for_a_refresh(home, fake, monkeypatch):
    monkeypatch.setenv("UNLEARN_TOKEN", "x" * 32)
    fake.body = {"version": "7", "all_replicas": True}
    assert wait(home).outcome == SERVED and fake.refreshes == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_refused_port_proves_nothing_unless_the_server_is_dead_on_this_host(home):
    url = f"http://127.0.0.1:{closed_port()}"
    write_serving_info(home, url, pid=os.getpid())  # refused, but its process is alive (restarting)
    assert wait(home).outcome is None
    write_serving_info(home, url, pid=dead_pid())
    v = wait(home)
    assert v.outcome == NOTHING_SERVING and "gone" in v.why
    info = json.loads((home.root / "serving.json").read_text())
    assert proven_dead(info)
    assert not proven_dead({**info, "host": "another-machine"})  # its pid means nothing here
    assert not proven_dead({k: v for k, v in info.items() if k != "host"})  # an old file: unknown host
    (home.root / "serving.json").write_text(json.dumps({**info, "host": "another-machine"}))
    assert wait(home).outcome is None


def test_no_server_file_and_no_cluster_is_nothing_serving(home):
    v = wait(home)
    assert v.outcome == NOTHING_SERVING and "no Ray cluster" in v.why
