"""`unlearn demo` as a newcomer runs it (digits, 2 people): the served version changes, the
forgotten samples leave the store, and nothing is left running."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def raylets() -> int:
    out = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True).stdout
    return len(out.split())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_changes_the_served_version_purges_and_leaves_nothing_running(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = raylets()
    r = subprocess.run([sys.executable, "-m", "jobs.cli", "demo", "--dataset", "digits", "--people", "2",
                        "--home", str(tmp_path / "demo"), "--port", str(port)], cwd=ROOT, capture_output=True,
                       text=True, timeout=540, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "v1 -> v2 (all replicas: True)" in r.stdout and ": purged" in r.stdout
    assert "6 forgotten samples, 0 left in the store" in r.stdout
    assert "mlflow ui --backend-store-uri" in r.stdout and "unlearn audit del-" in r.stdout
    assert not (tmp_path / "demo" / "serving.json").exists()
    assert raylets() == before  # the demo's Ray is gone
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # and nothing listens on its HTTP port
