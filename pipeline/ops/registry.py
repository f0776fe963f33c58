"""MLflow at the edge: every model version, its lineage, and the `champion` alias.

A version's artifact `model/` is an MLflow pyfunc model, written as code
(`pipeline/ops/pyfunc_model.py`, nothing pickled): `MLmodel` with a signature, an input
example and pip requirements, and `artifacts/checkpoint/` = `model.safetensors` +
`model.json` (the card that says how to rebuild the network), beside `lineage.json`, the
evaluation JSON and plots. `mlflow.pyfunc.load_model("models:/NAME@champion")` and
`mlflow models serve` open it; `mlflow.pytorch` would pickle (or torch.export) the model,
and the next unlearning round wants a plain state_dict anyway. Loading a version here
verifies the weights' SHA-256 against the version's tag, then reads them with
safetensors: nothing is ever unpickled. (Versions registered before the pyfunc layout
hold the checkpoint directly in `model/`; both load.)

The driver owns each run (Ray Train's `setup_mlflow` on a worker leaves runs RUNNING);
the client API is used, not the fluent one, so no global "active run" leaks between
nights in one process. The version's tags and lineage.json follow `pipeline.ops.lineage`.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.errors import UserError
from pipeline.models import load_checkpoint, save_checkpoint
from pipeline.ops.lineage import Lineage, VersionTags

CHAMPION = "champion"
TAG_LIMIT = 5000  # MLflow caps tag values; longer lists go to lineage.json only
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# What the pyfunc model imports from this project: the pure PyTorch model code, shipped
# with every version so MLflow loads it where this package is not installed.
SHIPPED_MODULES = ("__init__.py", "errors.py", "models.py")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_server(tracking_uri: str) -> bool:
    """An MLflow tracking server (rather than a store this process opens itself)."""
    return tracking_uri.split(":", 1)[0].lower() in ("http", "https", "databricks")


def checkpoint_of(directory: Path) -> Path:
    """The checkpoint folder inside a downloaded version: `artifacts/checkpoint/` of the
    pyfunc model, or the folder itself for a version from before the pyfunc layout."""
    inner = Path(directory) / "artifacts" / "checkpoint"
    return inner if inner.is_dir() else Path(directory)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("mlflow", "torch", "safetensors", "numpy"):
        try:
            out.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            out.append(name)
    return out


def save_pyfunc(path: Path, model: nn.Module, card: dict[str, Any]) -> str:
    """Write `model` as an MLflow pyfunc model at `path`; returns the weights' SHA-256.

    The signature is the served contract: rows of prod(input_shape) float32 in, one int64
    class per row out. The input example is synthetic (zeros), never a real sample: it
    would be a copy of someone's data inside every version, out of reach of a deletion."""
    import shutil

    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    import pipeline

    features = int(np.prod(card["input_shape"]))
    example = np.zeros((2, features), np.float32)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, features))]),
                               outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]))
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(Path(d) / "checkpoint", model, card)
        digest = file_sha256(Path(d) / "checkpoint" / "model.safetensors")
        code = Path(d) / "code" / "pipeline"
        code.mkdir(parents=True)
        for name in SHIPPED_MODULES:
            shutil.copy(Path(pipeline.__file__).with_name(name), code / name)
        mlflow.pyfunc.save_model(str(path), python_model=str(PYFUNC_CODE),
                                 artifacts={"checkpoint": str(Path(d) / "checkpoint")}, code_paths=[str(code)],
                                 signature=signature, input_example=example, pip_requirements=_requirements(),
                                 model_config={"weights_sha256": digest})
    return digest


def _mlflow_error(uri: str, e: Exception) -> str:
    """One line for what went wrong with the tracking store, without the HTTP client's
    nested retry message."""
    text = " ".join(str(e).split())
    if uri.startswith(("http://", "https://")) and ("Max retries exceeded" in text or "ConnectionError" in text
                                                    or "Errno" in text):
        refused = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
        why = refused.group(1).strip() if refused else "no answer"
        return f"cannot reach MLflow at {uri!r}: {why} (is the tracking server up? check MLFLOW_TRACKING_URI)"
    return f"cannot use MLflow at {uri!r}: {text} (check MLFLOW_TRACKING_URI)"


class Registry:
    def __init__(self, tracking_uri: str, model_name: str, artifacts: Path, experiment: str | None = None):
        import os

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per local file is noise
        # ending a run on a server prints "View run ..." links to stdout (where --json writes)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # MLflow retries an unreachable server 7 times with backoff (minutes); a wrong URI
        # should fail in seconds. Set these yourself for a flaky network.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        import logging

        for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration", "mlflow.pyfunc"):  # chatter on stderr
            logging.getLogger(noisy).setLevel(logging.WARNING)
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        self.name = model_name
        self.uri = tracking_uri
        self._exc = MlflowException
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            exp = self.client.get_experiment_by_name(experiment or model_name)
            if exp is None:
                location = None  # a tracking server: its own artifact store, which every machine reaches
                if not is_server(tracking_uri):  # a store on this machine (or a bare database): artifacts beside it
                    Path(artifacts).mkdir(parents=True, exist_ok=True)
                    location = Path(artifacts).resolve().as_uri()
                self.experiment_id = self.client.create_experiment(experiment or model_name,
                                                                   artifact_location=location)
            else:
                self.experiment_id = exp.experiment_id
        except Exception as e:  # unreachable server, bad scheme, a store MLflow cannot open
            raise UserError(_mlflow_error(tracking_uri, e)) from None
        del mlflow

    # ---- runs ----------------------------------------------------------------------

    def start_run(self, run_name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id

    def log(self, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
            tags: dict[str, str] | None = None) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        t = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), t, 0) for k, v in (metrics or {}).items() if v is not None],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_step_metric(self, run_id: str, key: str, values: list[tuple[int, float]],
                        times: list[float] | None = None) -> None:
        """A curve: (step, value) pairs, each at its own wall-clock time when `times` gives
        the end of every step (epoch seconds, indexed by step - 1), so MLflow can plot it
        against steps or time."""
        import time

        from mlflow.entities import Metric

        now = time.time()

        def at(step: int) -> int:
            return int(1000 * (times[min(max(step - 1, 0), len(times) - 1)] if times else now))

        for i in range(0, len(values), 500):
            self.client.log_batch(run_id, metrics=[Metric(key, float(v), at(int(s)), int(s))
                                                   for s, v in values[i:i + 500]])

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, context: str, rows: int) -> None:
        """A dataset the run used (MLflow's Datasets panel): `digest` is the store snapshot,
        so two runs on the same rows show the same dataset."""
        import json as _json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest[:36], source_type="local" if "://" not in source else "uri",
                          source=_json.dumps({"uri": source}), profile=_json.dumps({"num_rows": rows}))
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_artifacts(self, run_id: str, directory: Path, path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(directory), path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def runs_tagged(self, key: str, value: str) -> list[Any]:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{key}` = '{value}'")

    # ---- versions ------------------------------------------------------------------

    def register(self, run_id: str, model: nn.Module, card: dict[str, Any], lineage: Lineage,
                 extra_dir: Path | None = None) -> int:
        """Log the model as a pyfunc model (+ lineage.json, + extra_dir's files) to the run
        and create a model version from it. The version's tags carry the lineage and the
        weights' hash. One version per run: a second one would overwrite the first one's files."""
        if self.client.list_artifacts(run_id, "model"):
            raise RuntimeError(f"run {run_id} already holds a registered model; start a new run per version")
        with tempfile.TemporaryDirectory() as d:
            digest = save_pyfunc(Path(d) / "model", model, card)
            (Path(d) / "lineage.json").write_text(json.dumps(lineage.document(), indent=2))
            self.client.log_artifacts(run_id, str(Path(d) / "model"), "model")
            self.client.log_artifact(run_id, str(Path(d) / "lineage.json"))
        if extra_dir is not None:
            self.client.log_artifacts(run_id, str(extra_dir))
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        try:
            self.client.create_registered_model(self.name, description="A classifier that forgets on request: "
                                                "each version is a nightly unlearning batch (ray-unlearn).")
        except self._exc as e:
            if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = lineage.tags().model_copy(update={"weights_sha256": digest}).to_tags()
        tags = {k: (v if len(v) <= TAG_LIMIT else v[:TAG_LIMIT - 20] + "...(lineage.json)") for k, v in tags.items()}
        mv = self.client.create_model_version(self.name, source, run_id=run_id, tags=tags,
                                              description=lineage.summary)
        return int(mv.version)

    def versions(self) -> list[dict[str, Any]]:
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except self._exc:
            return []
        out = [{"version": int(v.version), "tags": dict(v.tags), "source": v.source, "run_id": v.run_id,
                "created": v.creation_timestamp} for v in found]
        return sorted(out, key=lambda v: v["version"])

    def version(self, version: int) -> dict[str, Any]:
        try:
            v = self.client.get_model_version(self.name, str(version))
        except self._exc:
            raise UserError(f"model {self.name} has no version {version}") from None
        return {"version": int(v.version), "tags": dict(v.tags), "source": v.source, "run_id": v.run_id,
                "aliases": list(v.aliases)}

    def tags(self, version: int) -> VersionTags:
        return VersionTags.from_tags(self.version(version)["tags"])

    def find_batch(self, batch_id: str) -> int | None:
        """The version registered by batch `batch_id` ("init" for the original), if any."""
        for v in self.versions():
            if VersionTags.from_tags(v["tags"]).batch_id == batch_id:
                return v["version"]
        return None

    def champion(self) -> int | None:
        try:
            return int(self.client.get_model_version_by_alias(self.name, CHAMPION).version)
        except self._exc:
            return None

    def set_champion(self, version: int) -> None:
        self.client.set_registered_model_alias(self.name, CHAMPION, str(version))

    def set_version_tag(self, version: int, key: str, value: str) -> None:
        if key not in VersionTags.model_fields:  # one schema for every tag we write
            raise ValueError(f"{key!r} is not a VersionTags field")
        self.client.set_model_version_tag(self.name, str(version), key, value)

    def download(self, version: int, dst: Path | None = None) -> Path:
        import mlflow

        info = self.version(version)
        deleted = VersionTags.from_tags(info["tags"]).weights_deleted_at
        if deleted:
            raise UserError(f"version {version}'s weights were deleted on {deleted} "
                            f"(it contained purged data and its grace period ended)")
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=info["source"], tracking_uri=self.uri,
                                                        dst_path=str(dst) if dst else None))

    def load(self, version: int) -> tuple[nn.Module, dict[str, Any]]:
        """Rebuild a registered version from safetensors, after checking its hash."""
        info = self.version(version)
        # Downloaded into a folder removed on return: a replica swapping versions all day
        # leaves no copies in /tmp (a version's weights may have to be deleted later).
        with tempfile.TemporaryDirectory(prefix="unlearn-load-") as d:
            directory = checkpoint_of(self.download(version, Path(d)))
            weights = directory / "model.safetensors"
            expected = VersionTags.from_tags(info["tags"]).weights_sha256
            if not weights.exists() or expected is None or file_sha256(weights) != expected:
                raise UserError(f"version {version}'s weights are missing or do not match their recorded SHA-256")
            return load_checkpoint(directory)

    def lineage(self, version: int) -> Lineage | None:
        """The version's lineage.json; None only when the version has none (one registered
        by hand in MLflow: its readers treat it as excluding nothing, which keeps every
        deletion's guard on). A read that fails (MLflow unreachable, a corrupt file)
        raises: a lineage read as empty would be written into every descendant."""
        import mlflow

        run_id = self.version(version)["run_id"]
        if run_id is None or "lineage.json" not in {a.path for a in self.client.list_artifacts(run_id)}:
            return None
        with tempfile.TemporaryDirectory() as d:  # nothing left behind in a temp folder
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="lineage.json",
                                                       tracking_uri=self.uri, dst_path=d)
            return Lineage.model_validate_json(Path(path).read_text())

    def delete_weights(self, version: int, when: str) -> None:
        """Delete a version's weight files (the registry entry and its lineage stay)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        info = self.version(version)
        get_artifact_repository(info["source"], tracking_uri=self.uri).delete_artifacts()
        self.set_version_tag(version, "weights_deleted_at", when)
