"""The ledger on a real SQLite file: intake, idempotency, bad input, forward-only states, the lock."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from pipeline.errors import UserError
from pipeline.ops.ledger import MAX_IDS_PER_REQUEST, Ledger


@pytest.fixture
def ledger(tmp_path):
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def snapshot(ledger):
    return ledger.list(), ledger.events()


def test_add_is_idempotent_and_derives_a_key(ledger):
    first, created = ledger.add(subject_id="alice", reason="GDPR Art. 17")
    again, created_again = ledger.add(subject_id="alice")
    assert created and not created_again
    assert again["request_id"] == first["request_id"] and first["status"] == "pending"
    # the same id set in another order is the same request
    a, _ = ledger.add(sample_ids=["s1", "s2"])
    b, created_b = ledger.add(sample_ids=["s2", "s1"])
    assert a["request_id"] == b["request_id"] and not created_b
    assert len(ledger.list()) == 2


def test_client_key_reused_for_another_request_is_refused(ledger):
    ledger.add(subject_id="alice", idempotency_key="k-1")
    before = snapshot(ledger)
    with pytest.raises(UserError, match="already used"):
        ledger.add(subject_id="bob", idempotency_key="k-1")
    assert snapshot(ledger) == before


@pytest.mark.parametrize("kwargs, message", [
    ({"sample_ids": []}, "empty"),
    ({"sample_ids": ["a", "b", "a"]}, "duplicate sample ids"),
    ({"sample_ids": [f"s{i}" for i in range(100_000)]}, f"at most {MAX_IDS_PER_REQUEST}"),
    ({"sample_ids": [1, 2]}, "must be a string"),
    ({"sample_ids": ["ok", None]}, "must be a string"),
    ({"sample_ids": "a,b"}, "must be a list"),
    ({"subject_id": 42}, "must be a string"),
    ({"subject_id": ""}, "empty"),
    ({"subject_id": " alice "}, "whitespace"),
    ({"subject_id": "x" * 300}, "at most 256"),
    ({"subject_id": "a\x00b"}, "control characters"),
    ({}, "exactly one"),
    ({"subject_id": "a", "sample_ids": ["b"]}, "exactly one"),
    ({"subject_id": "a", "reason": 5}, "reason must be a string"),
])
def test_bad_requests_raise_and_change_nothing(ledger, kwargs, message):
    ledger.add(subject_id="existing")
    before = snapshot(ledger)
    with pytest.raises(UserError, match=message):
        ledger.add(**kwargs)
    assert snapshot(ledger) == before


def test_odd_unicode_ids_are_kept_exactly(ledger):
    req, _ = ledger.add(subject_id="zoë-名前-🙂")
    assert ledger.get(req["request_id"])["subject_id"] == "zoë-名前-🙂"


def test_states_only_move_forward_and_repeat_harmlessly(ledger):
    req, _ = ledger.add(sample_ids=["s1", "s2"])
    rid = req["request_id"]
    with pytest.raises(RuntimeError, match="backwards"):
        ledger.mark_served([rid], 2, "b", "x")  # pending -> served skips applied
    ledger.mark_applied({rid: ["s1", "s2"]}, 2, "b", {rid: {"forget_accuracy": 50.0, "mia": 10.0}})
    ledger.mark_applied({rid: ["s1", "s2"]}, 2, "b", {})  # a re-run: no-op
    ledger.mark_served([rid], 2, "b", "nothing serving")
    ledger.mark_purged({rid: ["s1", "s2"]}, "b")
    ledger.mark_purged({rid: ["s1", "s2"]}, "b")
    rec = ledger.get(rid)
    assert rec["status"] == "purged" and rec["model_version"] == "2" and rec["forget_accuracy"] == 50.0
    assert [e["event"] for e in ledger.events(rid)] == ["received", "applied", "served", "purged"]
    with pytest.raises(RuntimeError, match="backwards"):
        ledger.reject({rid: "late"})
    assert ledger.purged_ids() == {"s1", "s2"}
    # asking again for purged samples only: rejected at once, with the reason
    again, created = ledger.add(sample_ids=["s1", "s2"])
    assert created and again["status"] == "rejected" and "already purged" in again["status_reason"]
    # one of them purged, one not: the other is still forgotten (pending), the reason says so
    partly, created = ledger.add(sample_ids=["s2", "s3"])
    assert created and partly["status"] == "pending" and "1 of the 2 samples were already purged" in partly["status_reason"]


def test_batches_claim_pending_and_resume(ledger):
    assert ledger.start_batch("night-1", 1) is None  # nothing pending
    a, _ = ledger.add(subject_id="a")
    b, _ = ledger.add(subject_id="b")
    batch = ledger.start_batch("night-1", 1)
    assert batch["request_ids"] == [a["request_id"], b["request_id"]]
    ledger.advance_batch("night-1", "resolved", request_ids=[a["request_id"]])
    opened = ledger.open_batch()
    assert opened["id"] == "night-1" and opened["state"] == "resolved" and opened["request_ids"] == [a["request_id"]]
    ledger.keep_pending([a["request_id"]], "gate failed", "night-1")
    ledger.advance_batch("night-1", "failed")
    assert ledger.open_batch() is None
    assert ledger.get(a["request_id"])["status_reason"] == "gate failed"


def test_lock_excludes_a_second_holder_and_recovers_from_dead_ones(ledger, tmp_path):
    owner = ledger.acquire_lock("nightly", timedelta(minutes=30))
    with pytest.raises(UserError, match="another nightly holds the lock"):
        ledger.acquire_lock("nightly", timedelta(minutes=30))
    assert ledger.heartbeat("nightly", owner)
    ledger.release_lock("nightly", owner)
    ledger.acquire_lock("nightly", timedelta(minutes=30))
    # a holder on another machine that stopped heart-beating is stale
    assert ledger.acquire_lock("nightly", timedelta(seconds=-1))
    # a holder on this machine whose process is gone is dead: taken over at once
    code = ("import sys; from datetime import timedelta; from pipeline.ops.ledger import Ledger;"
            "Ledger(sys.argv[1]).acquire_lock('other', timedelta(hours=1))")
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{tmp_path / 'ledger.db'}"], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    ledger.acquire_lock("other", timedelta(hours=1))
    assert any(e["event"] == "lock_taken_over" for e in ledger.events())


def test_bad_ledger_url_is_a_user_error():
    with pytest.raises(UserError, match="cannot open the ledger"):
        Ledger("nosuchdialect://x")
