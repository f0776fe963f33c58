"""The nightly batch's typed config: which method, the gates, when to retrain instead,
how long old weights may stay. The one home of these defaults: `unlearn nightly --help`,
`pipeline/configs/nightly.yaml` and its JSON Schema are generated from it
(`python -m jobs.schemas`, `make configs`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from pipeline.config import ConfigModel
from pipeline.ops.gates import GateConfig


class RetrainPolicy(ConfigModel):
    """Approximate unlearning drifts; an exact retrain resets it."""

    after_rounds: int = Field(5, ge=0, description="retrain from scratch on Ray after this many unlearning rounds "
                                                      "since the last exact model")
    above_forgotten_pct: float = Field(10.0, ge=0, description="or once this percentage of the exact "
                                                               "model's train rows has been forgotten since")


class NightlyConfig(ConfigModel):
    method: str = Field("lur", description="unlearning method; its hyper-parameters come from the dataset's config: "
                                           "its `nightly` section (small forget sets), else its `random` section")
    seed: int = Field(0, ge=0, description="seed of the unlearning run and the evaluation")
    gates: GateConfig = Field(default_factory=GateConfig, description="quality and privacy gates")
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy, description="when to retrain from scratch")
    grace_days: float = Field(7.0, ge=0, description="days after a purge before the weights of versions that "
                                                     "still hold the purged data are deleted")
    serve_wait_s: float = Field(60.0, ge=0, description="how long to wait for serving to report the new version live")
    # The floor is 4 heartbeats (pipeline.ops.ledger.HEARTBEAT_S, 30 s; a unit test ties the two):
    # any less and a live holder that missed one beat would be taken over.
    lock_stale_minutes: float = Field(30.0, ge=2.0, description="a lock without heartbeat this long belongs to a "
                                                                "dead machine (at least 2: four 30 s heartbeats)")

    @field_validator("gates", "retrain", mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, value: Any) -> Any:
        return {} if value is None else value  # `gates:` with nothing under it in YAML

    @field_validator("method")
    @classmethod
    def _an_unlearning_method(cls, method: str) -> str:
        from pipeline.methods import METHODS, ORACLE  # here, not at the top: `unlearn --help` needs no torch

        if method not in METHODS or method == ORACLE:
            raise ValueError(f"unknown unlearning method {method!r}; choose from "
                             f"{', '.join(m for m in METHODS if m != ORACLE)}")
        return method
