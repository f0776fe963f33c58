"""Test tiers, by folder: tests/unit (no Ray, seconds; `make test-fast`), tests/integration
(one shared local Ray) and tests/e2e (the CLI and HTTP as a user runs them). Tests that
take a minute or more are also marked `slow`. `make test` runs everything."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """`unlearn ARGS` in this process, through `jobs.cli.main`, as a subprocess would see it
    (exit code, stdout, stderr) without paying a Python start-up per case. `env` sets
    variables for the one call; `cwd` the working directory."""
    from jobs import cli

    def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> CliResult:
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            if cwd is not None:
                m.chdir(cwd)
            capsys.readouterr()
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 2
            out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run


class FakeServing:
    """A real HTTP server on loopback whose /model answer the test sets."""

    def __init__(self):
        self.status, self.body, self.delay, self.refreshes = 200, {}, 0.0, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                time.sleep(outer.delay)
                raw = outer.body if isinstance(outer.body, bytes) else json.dumps(outer.body).encode()
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the read-timeout case)

            def do_POST(self):
                outer.refreshes += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_serving():
    """A stand-in for the app's HTTP side, for faults the real app cannot be made to show on
    demand (5xx, a hang, garbage): set `.status`, `.body`, `.delay`; name `.url` in serving.json."""
    f = FakeServing()
    yield f
    f.close()
