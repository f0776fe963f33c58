"""Resolving requests to samples (`jobs.nightly.resolve`) on a real store and ledger: a
request partly unknown or partly purged still forgets the rest; only a request that names
nothing left is rejected."""

import numpy as np

from jobs.nightly import resolve
from pipeline.datasets import write_store
from pipeline.datasets.split import Split
from pipeline.ops.ledger import Ledger


def split(prefix, n):
    return Split(np.zeros((n, 4), dtype=np.float32), np.arange(n, dtype=np.int64) % 2,
                 np.array([f"{prefix}{i}" for i in range(n)], dtype=object),
                 np.array([f"p{i // 2}" for i in range(n)], dtype=object), (4,))


def test_partly_unknown_or_purged_requests_forget_the_rest(tmp_path):
    write_store(tmp_path / "store", split("t", 8), split("e", 4))
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    old, _ = ledger.add(sample_ids=["t6"])
    ledger.start_batch("night-0", 1)
    ledger.mark_applied({old["request_id"]: ["t6"]}, 2, "night-0", {})
    ledger.mark_served([old["request_id"]], 2, "night-0", "served")
    ledger.mark_purged({old["request_id"]: ["t6"]}, "night-0")
    mixed, _ = ledger.add(sample_ids=["t0", "t6", "nobody", "e1"])  # known, purged, unknown, test
    subject, _ = ledger.add(subject_id="p1")
    hopeless, _ = ledger.add(sample_ids=["nobody", "t6"])
    resolved, rejected, test_ids = resolve(ledger, tmp_path / "store",
                                           [mixed["request_id"], subject["request_id"], hopeless["request_id"]])
    assert resolved[mixed["request_id"]] == ["t0"] and test_ids[mixed["request_id"]] == ["e1"]
    assert resolved[subject["request_id"]] == ["t2", "t3"]
    assert list(rejected) == [hopeless["request_id"]]
    assert "1 unknown" in rejected[hopeless["request_id"]] and "1 samples already purged" in rejected[hopeless["request_id"]]
    note = [e for e in ledger.events(mixed["request_id"]) if e["event"] == "partly_resolved"]
    assert note and note[0]["detail"]["unknown"] == ["nobody"] and note[0]["detail"]["already_purged"] == ["t6"]


def test_purged_rows_that_reappear_are_deleted_again_before_anything_trains(tmp_path):
    from jobs.nightly import purge_resurfaced
    from pipeline.datasets import read_store

    write_store(tmp_path / "store", split("t", 8), split("e", 4))
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    req, _ = ledger.add(sample_ids=["t1", "e2"])
    ledger.start_batch("night-0", 1)
    ledger.mark_applied({req["request_id"]: ["t1"]}, 2, "night-0", {})
    ledger.mark_served([req["request_id"]], 2, "night-0", "served")
    ledger.mark_purged({req["request_id"]: ["t1"]}, "night-0", {req["request_id"]: ["e2"]})
    # the store was restored from a backup taken before the purge: t1 and e2 are back
    assert purge_resurfaced(ledger, tmp_path / "store", "night-1", log=lambda *a: None) == {"t1", "e2"}
    train, test = read_store(tmp_path / "store")
    assert "t1" not in train.sample_ids and "e2" not in test.sample_ids and len(train) == 7
    assert [e["event"] for e in ledger.events(batch_id="night-1")] == ["purged_again"]
    assert purge_resurfaced(ledger, tmp_path / "store", "night-2", log=lambda *a: None) == set()


def test_a_set_apart_request_goes_last_and_alone_and_failed_batches_split_in_two():
    from jobs.nightly import halves, plan_night
    from pipeline.ops.ledger import ISOLATED

    pending = [{"request_id": "a", "status_reason": None}, {"request_id": "big", "status_reason": f"{ISOLATED} (...)"},
               {"request_id": "b", "status_reason": "gate failed in batch x"}, {"request_id": "c", "status_reason": None}]
    assert plan_night(pending) == [["a", "b", "c"], ["big"]]
    assert plan_night(pending[1:2]) == [["big"]]
    assert halves(["a", "b", "c"]) == [["a", "b"], ["c"]] and halves(["a", "b"]) == [["a"], ["b"]]
