"""The lineage of one registered model version, as one typed record.

Two shapes of the same facts, both written when a version is registered:

- `Lineage`: the whole record, kept as `lineage.json` beside the weights (the parent,
  the method and its config, every deletion request the version excludes counting its
  ancestors, the store snapshot it was trained on, metrics and gates).
- `VersionTags`: the part MLflow keeps as the version's tags, so the registry UI and
  `search_model_versions` can filter on it, and the nightly can read it without
  downloading anything. Field names are the tag keys. The retrain policy reads
  `rounds_since_retrain`, `forgotten_since_retrain` and `exact_train_rows`; serving reads
  `parent_version` and `excluded_requests_count`; rollback reads `parent_version`.

Every writer (`jobs/init.py`, `jobs/nightly_mlflow.py`, the registry's own tags) and
every reader goes through these two models: a renamed field is a failing test, not a
retrain policy that silently reads zeros. Reading is lenient (a version someone created
by hand in MLflow has few of our tags; each missing one takes its default); writing is
strict: every field of `Lineage` without a default is required. (The few defaults are
for records written before those facts moved into lineage.json; the tags held them.)
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

METRIC_TAGS = ("UA", "RA", "TA", "MIA")


class VersionTags(BaseModel):
    """A model version's tags, typed. `to_tags()` writes them, `from_tags()` reads them."""

    model_config = ConfigDict(extra="ignore")  # tags added by hand in the MLflow UI are not ours to refuse

    batch_id: str | None = None  # "init" for the original model, else the nightly batch id
    parent_version: int | None = None
    method: str | None = None  # "train", "retrain" or an unlearning method
    config_hash: str | None = None
    request_ids: list[str] = Field(default_factory=list)  # truncated in the tag past TAG_LIMIT; lineage.json has all
    request_count: int = 0
    excluded_requests_count: int = 0  # this version's requests plus its ancestors'
    store_snapshot: str | None = None  # the train table this version saw (before its batch's purge)
    dataset: str | None = None
    # The retrain policy: how far this version is from the last exact (trained) model.
    rounds_since_retrain: int = 0
    forgotten_since_retrain: int = 0
    exact_train_rows: int = 0
    UA: float | None = None
    RA: float | None = None
    TA: float | None = None
    MIA: float | None = None
    # Written by the registry, not by the lineage.
    weights_sha256: str | None = None
    weights_deleted_at: str | None = None  # set when the grace period deleted the weights
    abandoned: str | None = None  # why an interrupted registration's version is not used

    def to_tags(self) -> dict[str, str]:
        """MLflow tag values are strings: "" for none, comma-joined lists, 2-decimal metrics."""
        out = {}
        for key, value in self.model_dump(exclude_none=True).items():
            if key in METRIC_TAGS:
                out[key] = f"{value:.2f}"
            elif isinstance(value, list):
                out[key] = ",".join(value)
            else:
                out[key] = str(value)
        if self.parent_version is None:
            out["parent_version"] = ""  # the original: searchable as "no parent"
        return out

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "VersionTags":
        data: dict[str, Any] = {}
        for key, value in tags.items():
            if key not in cls.model_fields or value in ("", "None"):
                continue
            data[key] = value.split(",") if key == "request_ids" else value
        return cls.model_validate(data)

    def metrics(self) -> dict[str, float]:
        """The finite metrics this version was tagged with (JSON has no NaN)."""
        return {k: getattr(self, k) for k in METRIC_TAGS
                if getattr(self, k) is not None and math.isfinite(getattr(self, k))}


class Lineage(BaseModel):
    """Where a model version came from and what it excludes: `lineage.json`."""

    model_config = ConfigDict(extra="ignore")

    summary: str
    parent_version: int | None
    method: str
    config: dict[str, Any] | None
    config_hash: str
    dataset: str
    store_snapshot: str
    request_ids: list[str]  # the requests this version's own batch applied
    excluded_requests: list[str]  # those plus every ancestor's: the data it never learned from
    metrics: dict[str, float]
    batch_id: str | None = None
    rounds_since_retrain: int = 0
    forgotten_since_retrain: int = 0
    exact_train_rows: int = 0
    parent_metrics: dict[str, float] | None = None
    gates: list[dict[str, Any]] | None = None
    forget_ids_sha256: str | None = None

    def tags(self) -> VersionTags:
        return VersionTags(
            batch_id=self.batch_id, parent_version=self.parent_version, method=self.method,
            config_hash=self.config_hash, request_ids=self.request_ids, request_count=len(self.request_ids),
            excluded_requests_count=len(self.excluded_requests), store_snapshot=self.store_snapshot,
            dataset=self.dataset, rounds_since_retrain=self.rounds_since_retrain,
            forgotten_since_retrain=self.forgotten_since_retrain, exact_train_rows=self.exact_train_rows,
            **{k: self.metrics[k] for k in METRIC_TAGS if k in self.metrics})

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
