"""The typed lineage of a model version: what the writers tag is what the readers read."""

import pytest
from pydantic import ValidationError

from pipeline.ops.lineage import Lineage, VersionTags


def night(**over):
    data = dict(summary="lur of 2 requests", batch_id="night-1", parent_version=3, method="lur",
                config={"lr": 0.001}, config_hash="abc", dataset="digits", store_snapshot="s1",
                request_ids=["del-a", "del-b"], excluded_requests=["del-0", "del-a", "del-b"],
                metrics={"UA": 20.0, "RA": 99.123, "TA": 95.5, "MIA": 10.0},
                rounds_since_retrain=2, forgotten_since_retrain=40, exact_train_rows=1438)
    return Lineage(**{**data, **over})


def test_tags_round_trip_everything_the_readers_use():
    tags = night().tags().to_tags()
    assert all(isinstance(v, str) for v in tags.values())  # MLflow tags are strings
    assert tags["request_ids"] == "del-a,del-b" and tags["RA"] == "99.12" and tags["parent_version"] == "3"
    back = VersionTags.from_tags(tags)
    # the retrain policy, serving and rollback read these
    assert (back.rounds_since_retrain, back.forgotten_since_retrain, back.exact_train_rows) == (2, 40, 1438)
    assert back.parent_version == 3 and back.excluded_requests_count == 3 and back.request_count == 2
    assert back.request_ids == ["del-a", "del-b"] and back.metrics()["TA"] == 95.5


def test_the_original_has_no_parent_and_only_the_metrics_it_measured():
    tags = night(batch_id="init", parent_version=None, request_ids=[], excluded_requests=[],
                 metrics={"RA": 99.0, "TA": 97.0}).tags().to_tags()
    assert tags["parent_version"] == "" and "UA" not in tags
    back = VersionTags.from_tags(tags)
    assert back.parent_version is None and back.request_ids == [] and back.metrics() == {"RA": 99.0, "TA": 97.0}


def test_reading_is_lenient_writing_is_strict():
    # a version made by hand in the MLflow UI: foreign tags are ignored, missing ones default
    back = VersionTags.from_tags({"owner": "alice", "TA": "nan"})
    assert back.rounds_since_retrain == 0 and back.batch_id is None and back.metrics() == {}
    with pytest.raises(ValidationError):
        Lineage(summary="no batch facts")


def test_old_lineage_documents_still_read():
    """lineage.json written before the retrain counters moved into it (they were tags only)."""
    doc = night().document()
    for key in ("batch_id", "rounds_since_retrain", "forgotten_since_retrain", "exact_train_rows"):
        doc.pop(key)
    assert Lineage.model_validate(doc).excluded_requests == ["del-0", "del-a", "del-b"]
