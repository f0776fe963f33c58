"""`$UNLEARN_HOME`: where one deployment keeps its state (a contract: serving, the nightly and
operators all read this layout).

    $UNLEARN_HOME/
      home.json        what `unlearn init` set up: dataset, registered model name
      datasets/NAME/   the Parquet sample store
      ledger.db        deletion requests, nightly batches, audit events (SQLite default)
      mlflow.db        MLflow tracking + registry (SQLite default)
      mlartifacts/     MLflow artifacts of a local store (a tracking server keeps its own)
      nightly/BATCH/   one batch's scratch space (unlearned weights before registration)
      ray_results/     Ray Train runs (checkpoints while a run is in flight)

The ledger and MLflow can live elsewhere: `UNLEARN_LEDGER_URL` takes any SQLAlchemy
URL (PostgreSQL in production) and `MLFLOW_TRACKING_URI` any tracking server.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.datasets.catalog import store_dir
from pipeline.errors import UserError

STATE_FILE = "home.json"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, root: str | Path | None = None) -> "Home":
        return cls(Path(root or os.environ.get("UNLEARN_HOME") or "./.unlearn").resolve())

    @property
    def ledger_url(self) -> str:
        url = os.environ.get("UNLEARN_LEDGER_URL")
        if not url and os.environ.get("UNLEARN_REQUIRE_LEDGER_URL") == "1":  # set by `unlearn submit`
            raise UserError("this job was submitted with a ledger URL holding a password, which is not sent "
                            "through the Ray dashboard: set UNLEARN_LEDGER_URL in the cluster's environment "
                            "(e.g. from a Kubernetes Secret, see deploy/)")
        return url or f"sqlite:///{self.root / 'ledger.db'}"

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def train_runs(self) -> Path:
        """Where init's and the nightly's Ray Train runs keep their in-flight checkpoints.
        Nothing here is the home of any weights (the registry is): housekeeping empties it,
        so no checkpoint of a crashed run outlives the grace period of the data it saw."""
        return self.root / "ray_results" / "deployment"

    @property
    def nightly_dir(self) -> Path:
        return self.root / "nightly"

    def store(self) -> Path:
        """The deployment's Parquet sample store (after `unlearn init`)."""
        return store_dir(self.state()["dataset"], self.root)

    def state(self) -> dict[str, Any]:
        """What `unlearn init` recorded; a clear error when it has not run here."""
        path = self.root / STATE_FILE
        if not path.exists():
            raise UserError(f"{self.root} has no deployment yet: run `unlearn init --dataset NAME` first "
                            f"(or set UNLEARN_HOME to the right directory)")
        try:
            state = json.loads(path.read_text())
        except (ValueError, OSError) as e:
            raise UserError(f"{path} is unreadable or corrupt ({e}): restore it from a backup, or set up a new "
                            f"UNLEARN_HOME with `unlearn init`") from None
        if not isinstance(state, dict) or not {"dataset", "model_name"} <= set(state):
            raise UserError(f"{path} is corrupt (no dataset/model_name): restore it from a backup, or set up a "
                            f"new UNLEARN_HOME with `unlearn init`")
        return state

    def ledger(self):
        """The deployment's ledger (after `unlearn init`)."""
        from pipeline.ops.ledger import Ledger

        self.state()
        _require_sqlite_file(self.ledger_url, "ledger", "UNLEARN_LEDGER_URL")
        return Ledger(self.ledger_url)

    def registry(self):
        """The deployment's MLflow registry (after `unlearn init`)."""
        from pipeline.ops.registry import Registry

        state = self.state()
        _require_sqlite_file(self.tracking_uri, "MLflow store", "MLFLOW_TRACKING_URI")
        return Registry(self.tracking_uri, state["model_name"], self.artifacts)

    def write_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.root / STATE_FILE)


def _require_sqlite_file(url: str, what: str, env: str) -> None:
    """`unlearn init` created this deployment's SQLite files. One that is missing means a
    mistyped URL, and opening it would silently create an empty store (no requests, no
    champion) instead of saying so."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return  # not a URL SQLAlchemy reads: opening it says what is wrong
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return
    if not Path(db).exists():
        raise UserError(f"no {what} at {db}: check {env} (unset, it is $UNLEARN_HOME's own)")


def registered_model_name(dataset: str) -> str:
    """`fashion-mnist` -> `unlearn-fashion-mnist`; parquet paths become their directory name."""
    base = Path(dataset.split(":", 1)[1]).name if dataset.startswith("parquet:") else dataset
    return "unlearn-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "data")
