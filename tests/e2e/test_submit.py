"""`unlearn submit` against a real `ray start --head` on loopback, with token auth, stopped afterwards."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A Ray head of its own (not the integration tests' Ray), with a token, on loopback."""
    token = "tok-" + secrets.token_hex(16)
    dash = free_port()
    env = {**os.environ, "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
           # the job's `python` must be this environment's
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    tmp = tempfile.mkdtemp(prefix="/tmp/rh")  # short: Ray's socket paths have a length limit
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             f"--port={free_port()}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=true",
                             "--disable-usage-stats", f"--temp-dir={tmp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # 401 without the token: it is up
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("ray start --head did not come up")
            time.sleep(1)
    yield url, env
    # SIGTERM makes `ray start --block` stop its processes gracefully, which took 34 s
    # here; the head and its jobs are throwaway, so the whole group is killed, and the
    # test waits until no process of this head's temp dir is left.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", tmp], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "processes of the test's Ray head are still running"
        time.sleep(0.5)
    shutil.rmtree(tmp, ignore_errors=True)


def unlearn(*args, env, home):
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "UNLEARN_HOME": str(home)}, timeout=240)


def test_submit_runs_a_job_with_its_exit_status_and_refuses_a_second_nightly(head, tmp_path):
    url, env = head
    ok = unlearn("submit", "--address", url, "--wait", "--", "serve", "--help", env=env, home=tmp_path)
    assert ok.returncode == 2 and "not a batch job" in ok.stderr  # serve/demo/submit are refused
    good = unlearn("submit", "--address", url, "--wait", "--", "versions", "--help", env=env, home=tmp_path)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "usage: unlearn versions" in good.stdout  # the job's log, streamed
    bad = unlearn("submit", "--address", url, "--wait", "--", "audit", "del-nope", env=env, home=tmp_path)
    assert bad.returncode == 2, bad.stderr[-2000:]  # the job's own exit status (no deployment: exit 2)
    first = unlearn("submit", "--address", url, "--submission-id", "nightly-test-1", "--", "versions", "--help",
                    env=env, home=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = unlearn("submit", "--address", url, "--submission-id", "nightly-test-1", "--", "versions", "--help",
                    env=env, home=tmp_path)
    assert again.returncode == 2 and "already submitted" in again.stderr


def test_a_wrong_token_or_address_is_one_clear_line(head, tmp_path):
    url, env = head
    wrong = unlearn("submit", "--address", url, "--", "versions", env={**env, "RAY_AUTH_TOKEN": "nope"}, home=tmp_path)
    assert wrong.returncode == 2 and "RAY_AUTH_TOKEN" in wrong.stderr and "Traceback" not in wrong.stderr
    gone = unlearn("submit", "--address", "http://127.0.0.1:9", "--", "versions", env=env, home=tmp_path)
    assert gone.returncode == 2 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr
