"""The ledger under concurrency and faults, on SQLite and on a real PostgreSQL server: the
same request sent at the same moment, two machines taking over a stale lock at once, a
lock taken over under a running nightly, a heartbeat that meets a database blip."""

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from jobs.nightly import LOCK, Heartbeat
from pipeline.errors import UserError
from pipeline.ops.ledger import HEARTBEAT_S, Ledger, Lock, LockLost, now
from pipeline.ops.nightly_config import NightlyConfig


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres").new_database()


def at_once(n, fn):
    """Run `fn(i)` in n threads released together; their results (or exceptions)."""
    gate, out = threading.Barrier(n), [None] * n

    def go(i):
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # collected: the test says which are allowed
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    return out


def test_the_same_request_sent_at_the_same_moment_is_one_request(url):
    ledgers = [Ledger(url) for _ in range(6)]  # one connection pool each: like six replicas
    out = at_once(6, lambda i: ledgers[i].add(subject_id="alice", reason="GDPR Art. 17"))
    assert not [o for o in out if isinstance(o, Exception)], out
    assert len({req["request_id"] for req, _ in out}) == 1
    assert sum(created for _, created in out) == 1
    assert len(ledgers[0].list()) == 1
    assert [e["event"] for e in ledgers[0].events()] == ["received"]


def make_stale(ledger, name):
    with ledger.session.begin() as s:
        s.execute(update(Lock).where(Lock.name == name).values(heartbeat_at=now() - timedelta(hours=2)))


def test_two_machines_taking_over_a_stale_lock_at_once_leave_exactly_one_holder(url):
    ledgers = [Ledger(url) for _ in range(4)]
    ledgers[0].acquire_lock(LOCK, timedelta(minutes=30))
    make_stale(ledgers[0], LOCK)
    out = at_once(4, lambda i: ledgers[i].acquire_lock(LOCK, timedelta(minutes=30)))
    owners = [o for o in out if isinstance(o, str)]
    assert len(owners) == 1, out
    assert all(isinstance(o, UserError) and "another nightly" in str(o) for o in out if o not in owners), out
    ledgers[0].check_lock(LOCK, owners[0])  # the winner holds it


def test_a_taken_over_nightly_finds_out_before_its_next_write(url):
    ledger = Ledger(url)
    owner = ledger.acquire_lock(LOCK, timedelta(minutes=30))
    beat = Heartbeat(ledger, owner, every_s=0.02)
    beat.check()
    make_stale(ledger, LOCK)  # this machine stalled (a long GC, a frozen VM): it looks dead
    taker = Ledger(url).acquire_lock(LOCK, timedelta(minutes=30))
    beat.start()  # and wakes up
    with pytest.raises(LockLost, match="taken over"):
        ledger.check_lock(LOCK, owner)
    deadline = time.monotonic() + 10
    while beat.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert beat.lost and not beat.is_alive()  # the heartbeat saw it too, and stopped beating
    with pytest.raises(LockLost):
        beat.check()
    assert not ledger.heartbeat(LOCK, owner)  # and cannot refresh what it no longer holds
    ledger.release_lock(LOCK, owner)  # a no-op: it is not ours
    ledger.check_lock(LOCK, taker)


class BlinkingLedger(Ledger):
    """The real ledger, whose heartbeat meets an unreachable database twice."""

    failures = 2

    def heartbeat(self, name, owner):
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE locks", {}, Exception("server closed the connection unexpectedly"))
        return super().heartbeat(name, owner)


def test_a_heartbeat_survives_a_database_blip(tmp_path):
    ledger = BlinkingLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    owner = ledger.acquire_lock(LOCK, timedelta(minutes=30))
    beat = Heartbeat(ledger, owner, every_s=0.02)
    beat.start()
    deadline = time.monotonic() + 10
    while ledger.failures and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert beat.is_alive() and not beat.lost  # it kept beating through the blip
    beat.check()
    beat.stopped.set()


def test_a_stale_limit_below_four_heartbeats_is_refused():
    assert NightlyConfig.model_fields["lock_stale_minutes"].metadata[0].ge == 4 * HEARTBEAT_S / 60
    with pytest.raises(UserError, match="lock_stale_minutes"):
        NightlyConfig.from_dict({"lock_stale_minutes": 0.25})
    NightlyConfig.from_dict({"lock_stale_minutes": 2})


def test_a_subject_asking_again_after_a_purge_is_a_new_request(url):
    ledger = Ledger(url)
    first, _ = ledger.add(subject_id="alice")
    again, created = ledger.add(subject_id="alice")
    assert not created and again["request_id"] == first["request_id"]  # still under way: the same one
    ledger.start_batch("night-1", 1)
    ledger.mark_applied({first["request_id"]: ["a1"]}, 2, "night-1", {})
    ledger.mark_served([first["request_id"]], 2, "night-1", "served")
    ledger.mark_purged({first["request_id"]: ["a1"]}, "night-1")
    later, created = ledger.add(subject_id="alice")  # new samples of alice arrived since
    assert created and later["request_id"] != first["request_id"] and later["status"] == "pending"
    assert ledger.add(subject_id="alice")[0]["request_id"] == later["request_id"]  # and it is idempotent in turn
    # a client's own key keeps its meaning: the same key is the same request, whatever its state
    keyed, _ = ledger.add(subject_id="bob", idempotency_key="client-7")
    ledger.reject({keyed["request_id"]: "no samples"})
    assert ledger.add(subject_id="bob", idempotency_key="client-7")[0]["request_id"] == keyed["request_id"]
    out = at_once(4, lambda i: Ledger(url).add(subject_id="bob"))  # after a rejection, asked four times at once
    assert len({r["request_id"] for r, _ in out}) == 1 and sum(c for _, c in out) == 1
