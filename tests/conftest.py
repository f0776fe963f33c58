"""Test tiers, by folder: tests/unit (no Ray, seconds; `make test-fast`), tests/integration
(one shared local Ray) and tests/e2e (the CLI and HTTP as a user runs them). Tests that
take a minute or more are also marked `slow`. `make test` runs everything."""

import os
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
