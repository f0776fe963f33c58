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


class PostgresServer:
    """A throwaway PostgreSQL server on a Unix socket (no TCP), trust auth, for one session."""

    def __init__(self, bindir: Path):
        import shutil
        import socket
        import subprocess
        import tempfile

        self.bindir, self._subprocess, self._shutil = bindir, subprocess, shutil
        # Not under pytest's tmp dirs: those are 0700 to root, and the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="unlearn-pg-"))
        self.data, self.sock = self.base / "data", self.base / "sock"
        self.sock.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.run_as = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sock, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-A", "trust", "-U", "postgres", "-D", str(self.data), "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.base / "server.log"), "-o",
                  f"-k {self.sock} -p {self.port} -c listen_addresses='' -c fsync=off", "start")
        self._n = 0

    def _run(self, tool: str, *args: str) -> None:
        out = self._subprocess.run([*self.run_as, str(self.bindir / tool), *args], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{tool} failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL (psycopg 3, over the socket)."""
        from sqlalchemy import create_engine, text

        self._n += 1
        name = f"ledger{self._n}"
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@/{db}?host={self.sock}&port={self.port}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        self._shutil.rmtree(self.base, ignore_errors=True)


def postgres_bindir() -> Path | None:
    """The server binaries: Debian's /usr/lib/postgresql/N/bin (newest), else initdb on PATH."""
    import shutil

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                   if p.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for ledger tests. Skipped where the binaries are missing,
    except under UNLEARN_REQUIRE_POSTGRES=1 (CI installs Debian's postgresql and sets it)."""
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("UNLEARN_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (UNLEARN_REQUIRE_POSTGRES=1) but initdb is not installed")
        pytest.skip("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    server = PostgresServer(bindir)
    yield server
    server.stop()


class MlflowServer:
    """A real `mlflow server` on loopback: a PostgreSQL backend store, artifacts served
    (proxied) from a folder of its own, as a platform team runs it."""

    def __init__(self, backend_uri: str, root: Path):
        import socket
        import subprocess
        import sys
        import time
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url, self.artifacts = f"http://127.0.0.1:{port}", root / "server-artifacts"
        self.log = open(root / "mlflow-server.log", "w")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                                      backend_uri, "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
                                      "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("mlflow server did not come up: " + (root / "mlflow-server.log").read_text()[-2000:])
                time.sleep(0.5)

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, OSError):
            pass
        self.log.close()


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    server = MlflowServer(postgres.new_database(), tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()
