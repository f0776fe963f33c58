"""The ledger of deletion requests: a real SQL database through SQLAlchemy.

SQLite in `$UNLEARN_HOME` by default; any SQLAlchemy URL (PostgreSQL) by
`UNLEARN_LEDGER_URL`. Four tables:

    requests        one row per deletion request and its state
    events          the audit trail: one row per thing that happened to a request or batch
    batches         nightly batches and how far each got (so a crashed night resumes)
    purged_samples  ids (only ids) of samples purged from the store, and by which request
    locks           the nightly lock, shared by every machine that shares the database

A request's state only moves forward:

    pending -> applied (a registered version excludes it) -> served -> purged
    pending -> rejected (with the reason)

Every transition is idempotent (repeating it is a no-op), so a crashed night re-runs
safely. Validation happens before anything is written: a bad request changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from pipeline.errors import UserError

STATES = ("pending", "applied", "served", "purged", "rejected")
FORWARD = {"pending": ("applied", "rejected"), "applied": ("served",), "served": ("purged",)}
MAX_IDS_PER_REQUEST = 10_000  # a larger deletion is a data-retention job, not a request; say so
MAX_ID_LENGTH = 256
MAX_REASON_LENGTH = 1000
MAX_KEY_LENGTH = 128  # idempotency keys
NIGHTLY_LOCK = "nightly"  # held by `unlearn nightly` and `unlearn rollback`
ISOLATED = "fails the gates on its own"  # status_reason prefix of a request the nightly set apart
HEARTBEAT_S = 30.0  # how often the nightly refreshes its lock


class LockLost(RuntimeError):
    """This process no longer holds the lock it took: another machine took it over (it looked
    dead), or the ledger could not be reached to keep it. Stop before the next write."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC
        t = t.replace(tzinfo=timezone.utc)
    return t.isoformat(timespec="seconds")


class Base(DeclarativeBase):
    pass


class Request(Base):
    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), unique=True)
    subject_id: Mapped[str | None] = mapped_column(String(MAX_ID_LENGTH))
    sample_ids: Mapped[list | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)  # why rejected, or why still pending
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    batch_id: Mapped[str | None] = mapped_column(String(64))
    resolved_ids: Mapped[list | None] = mapped_column(JSON)  # train sample ids it resolved to
    applied_version: Mapped[int | None] = mapped_column(Integer)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forget_accuracy: Mapped[float | None] = mapped_column(Float)  # of applied_version on its samples
    mia: Mapped[float | None] = mapped_column(Float)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.id, "status": self.status, "status_reason": self.status_reason,
            "subject_id": self.subject_id, "sample_ids": self.sample_ids, "reason": self.reason,
            "idempotency_key": self.idempotency_key, "received_at": iso(self.received_at),
            "batch_id": self.batch_id, "n_samples": len(self.resolved_ids) if self.resolved_ids is not None else None,
            "model_version": str(self.applied_version) if self.applied_version is not None else None,
            "applied_at": iso(self.applied_at), "served_at": iso(self.served_at), "purged_at": iso(self.purged_at),
            "rejected_at": iso(self.rejected_at), "forget_accuracy": self.forget_accuracy, "mia": self.mia,
        }


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict | None] = mapped_column(JSON)


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # see jobs/nightly.py STAGES
    request_ids: Mapped[list] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    parent_version: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSON)


class PurgedSample(Base):
    __tablename__ = "purged_samples"
    sample_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    purged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Lock(Base):
    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, got {type(value).__name__} {value!r:.40}")
    if not value.strip() or value != value.strip():
        raise UserError(f"{what} {value!r:.60} is empty or has surrounding whitespace")
    if len(value) > MAX_ID_LENGTH:
        raise UserError(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise UserError(f"{what} {value!r:.60} contains control characters")
    return value


def validate_request(subject_id: Any = None, sample_ids: Any = None, reason: Any = None,
                     idempotency_key: Any = None) -> tuple[str | None, list[str] | None, str | None]:
    """Check a request's shape before anything is written; return it normalised."""
    if (subject_id is None) == (sample_ids is None):
        raise UserError("a deletion request names exactly one of a subject id or a list of sample ids")
    if subject_id is not None:
        _check_id(subject_id, "subject id")
    if sample_ids is not None:
        if not isinstance(sample_ids, (list, tuple)):
            raise UserError(f"sample ids must be a list of strings, got {type(sample_ids).__name__}")
        if not sample_ids:
            raise UserError("the sample id list is empty: name at least one sample")
        if len(sample_ids) > MAX_IDS_PER_REQUEST:
            raise UserError(f"{len(sample_ids)} sample ids in one request; at most {MAX_IDS_PER_REQUEST}: split it "
                            f"into several requests, or name the subject instead")
        for i, s in enumerate(sample_ids):
            _check_id(s, f"sample id #{i}")
        seen, dupes = set(), []
        for s in sample_ids:
            (dupes.append(s) if s in seen else seen.add(s))
        if dupes:
            raise UserError(f"duplicate sample ids in the request: {', '.join(sorted(set(dupes))[:5])}")
        sample_ids = list(sample_ids)
    if reason is not None:
        if not isinstance(reason, str):
            raise UserError(f"reason must be a string, got {type(reason).__name__}")
        if len(reason) > MAX_REASON_LENGTH:
            raise UserError(f"reason is {len(reason)} characters; at most {MAX_REASON_LENGTH}")
    if idempotency_key is not None:
        _check_id(idempotency_key, "idempotency key")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise UserError(f"idempotency key is longer than {MAX_KEY_LENGTH} characters")
    return subject_id, sample_ids, reason


def derived_key(subject_id: str | None, sample_ids: list[str] | None) -> str:
    """The same deletion asked twice gets the same key: subject, or the sorted id set."""
    body = f"subject\0{subject_id}" if subject_id is not None else "samples\0" + "\0".join(sorted(sample_ids or []))
    return "auto-" + hashlib.sha256(body.encode()).hexdigest()[:32]


class Ledger:
    """All reads and writes of the ledger. Each public method is one transaction."""

    def __init__(self, url: str):
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as e:  # a malformed URL, a missing driver
            raise UserError(f"cannot open the ledger at {url!r}: {e}") from None
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # WAL: the server reads while the nightly writes
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as e:
            raise UserError(f"cannot open the ledger at {url!r}: {e.orig}") from None
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    # ---- intake ----------------------------------------------------------------

    def add(self, subject_id: Any = None, sample_ids: Any = None, reason: Any = None,
            idempotency_key: Any = None) -> tuple[dict[str, Any], bool]:
        """Queue a deletion. Returns (request, created); the same request (same key) twice
        returns the first. Ids already purged are rejected at once, with the reason.

        The same request sent twice at the same moment (a client retrying, two replicas)
        races on the unique key: the loser's transaction fails (a unique violation on
        PostgreSQL, a busy snapshot on SQLite) and is retried, and then finds the winner's
        row, so both callers get the one request."""
        subject_id, sample_ids, reason = validate_request(subject_id, sample_ids, reason, idempotency_key)
        key = idempotency_key or derived_key(subject_id, sample_ids)
        for attempt in range(6):
            try:
                return self._add(subject_id, sample_ids, reason, key, derived=idempotency_key is None)
            except (IntegrityError, OperationalError) as e:
                if attempt == 5 or (isinstance(e, OperationalError) and "locked" not in str(e.orig)):
                    raise
                time.sleep(0.02 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _add(self, subject_id: str | None, sample_ids: list[str] | None, reason: str | None,
             key: str, derived: bool) -> tuple[dict[str, Any], bool]:
        with self.session.begin() as s:
            existing = s.scalar(select(Request).where(Request.idempotency_key == key))
            if existing is not None:
                same = existing.subject_id == subject_id and sorted(existing.sample_ids or []) == sorted(sample_ids or [])
                if not same:
                    raise UserError(f"idempotency key {key!r} was already used for a different request "
                                    f"({existing.id}); use a new key")
            if existing is not None and derived:
                # A derived key means "the same deletion": the latest one of them answers, while
                # it is still under way. Once it finished (purged, rejected), the same words are a
                # new request: a subject asking again after new samples of theirs arrived.
                rounds = list(s.scalars(select(Request).where(Request.idempotency_key.like(f"{key}%"))
                                        .order_by(Request.received_at.desc(), Request.id.desc())))
                if rounds[0].status not in ("purged", "rejected"):
                    return rounds[0].to_dict(), False
                key = f"{key}-r{len(rounds) + 1}"  # deterministic: two callers at once race on it
            elif existing is not None:
                return existing.to_dict(), False
            t = now()
            req = Request(id="del-" + uuid.uuid4().hex[:16], idempotency_key=key, subject_id=subject_id,
                          sample_ids=sample_ids, reason=reason, status="pending", received_at=t, updated_at=t)
            if sample_ids is not None:
                purged = set(s.scalars(select(PurgedSample.sample_id).where(PurgedSample.sample_id.in_(sample_ids))))
                if len(purged) == len(sample_ids):  # only then is there nothing left to forget
                    req.status, req.rejected_at = "rejected", t
                    req.status_reason = (f"all {len(purged)} samples were already purged from the store "
                                         f"(e.g. {sorted(purged)[0]}): there is nothing left to forget")
                elif purged:  # the rest is forgotten as asked; the audit record says which were gone
                    req.status_reason = (f"{len(purged)} of the {len(sample_ids)} samples were already purged "
                                         f"(e.g. {sorted(purged)[0]}); the other {len(sample_ids) - len(purged)} "
                                         f"will be forgotten")
            s.add(req)
            s.flush()  # the request row first: events reference it
            s.add(Event(at=t, request_id=req.id, event="received",
                        detail={"subject_id": subject_id, "n_sample_ids": len(sample_ids) if sample_ids else None}))
            if req.status == "rejected":
                s.add(Event(at=t, request_id=req.id, event="rejected", detail={"reason": req.status_reason}))
            s.flush()
            return req.to_dict(), True

    def get(self, request_id: str) -> dict[str, Any]:
        with self.session() as s:
            req = s.get(Request, request_id)
            if req is None:
                raise UserError(f"no deletion request {request_id!r}")
            return req.to_dict()

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in STATES:
            raise UserError(f"unknown status {status!r}; choose from {', '.join(STATES)}")
        with self.session() as s:
            q = select(Request).order_by(Request.received_at, Request.id)
            if status:
                q = q.where(Request.status == status)
            return [r.to_dict() for r in s.scalars(q)]

    def events(self, request_id: str | None = None, batch_id: str | None = None) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(Event).order_by(Event.id)
            if request_id:
                q = q.where(Event.request_id == request_id)
            if batch_id:
                q = q.where(Event.batch_id == batch_id)
            return [{"at": iso(e.at), "event": e.event, "request_id": e.request_id, "batch_id": e.batch_id,
                     "detail": e.detail} for e in s.scalars(q)]

    # ---- transitions (idempotent, forward only) ---------------------------------

    def _move(self, s: Session, req: Request, to: str, t: datetime, batch_id: str | None, **detail: Any) -> bool:
        if req.status == to:
            return False  # already there: a re-run repeats the transition harmlessly
        if to not in FORWARD.get(req.status, ()):
            raise RuntimeError(f"request {req.id}: {req.status} -> {to} would move backwards")
        req.status, req.updated_at = to, t
        s.add(Event(at=t, request_id=req.id, batch_id=batch_id, event=to, detail=detail or None))
        return True

    def reject(self, reasons: dict[str, str], batch_id: str | None = None) -> None:
        with self.session.begin() as s:
            t = now()
            for rid, why in reasons.items():
                req = s.get(Request, rid)
                if self._move(s, req, "rejected", t, batch_id, reason=why):
                    req.status_reason, req.rejected_at = why, t

    def keep_pending(self, request_ids: Iterable[str], why: str, batch_id: str, event_name: str = "gate_failed") -> None:
        """A failed gate: the requests stay pending, with the reason, for the next night."""
        with self.session.begin() as s:
            t = now()
            for rid in request_ids:
                req = s.get(Request, rid)
                if req.status == "pending":
                    req.status_reason, req.updated_at, req.batch_id = why, t, None
                    s.add(Event(at=t, request_id=rid, batch_id=batch_id, event=event_name, detail={"reason": why}))

    def mark_applied(self, resolved: dict[str, list[str]], version: int, batch_id: str,
                     per_request: dict[str, dict[str, float]]) -> None:
        with self.session.begin() as s:
            t = now()
            for rid, ids in resolved.items():
                req = s.get(Request, rid)
                m = per_request.get(rid, {})
                if self._move(s, req, "applied", t, batch_id, version=version, **m):
                    req.applied_version, req.applied_at, req.resolved_ids = version, t, ids
                    req.forget_accuracy, req.mia, req.status_reason = m.get("forget_accuracy"), m.get("mia"), None

    def mark_served(self, request_ids: Iterable[str], version: int, batch_id: str, how: str) -> None:
        with self.session.begin() as s:
            t = now()
            for rid in request_ids:
                req = s.get(Request, rid)
                if self._move(s, req, "served", t, batch_id, version=version, how=how):
                    req.served_at = t

    def mark_purged(self, resolved: dict[str, list[str]], batch_id: str, extra: dict[str, list[str]] | None = None) -> None:
        """Served -> purged, and the purged ids recorded (ids only) in one transaction."""
        with self.session.begin() as s:
            t = now()
            for rid, ids in resolved.items():
                req = s.get(Request, rid)
                gone = ids + (extra or {}).get(rid, [])
                if self._move(s, req, "purged", t, batch_id, n_samples=len(gone)):
                    req.purged_at = t
                    known = set(s.scalars(select(PurgedSample.sample_id).where(PurgedSample.sample_id.in_(gone))))
                    s.add_all(PurgedSample(sample_id=i, request_id=rid, purged_at=t) for i in gone if i not in known)

    def requeue(self, request_ids: Iterable[str], why: str, batch_id: str | None = None) -> None:
        """applied/served -> pending: the only backward move, for a forced rollback to a
        version that holds their data (and whose samples are still in the store)."""
        with self.session.begin() as s:
            t = now()
            for rid in request_ids:
                req = s.get(Request, rid)
                if req.status not in ("applied", "served"):
                    raise RuntimeError(f"request {rid} is {req.status}: only applied or served requests are queued again")
                s.add(Event(at=t, request_id=rid, batch_id=batch_id, event="requeued",
                            detail={"from": req.status, "version": req.applied_version, "reason": why}))
                req.status, req.status_reason, req.updated_at, req.batch_id = "pending", why, t, None
                req.applied_version = req.applied_at = req.served_at = None
                req.forget_accuracy = req.mia = None

    def drop_batch(self, batch_id: str, why: str, event_name: str, detail: dict[str, Any]) -> None:
        """End an open batch without finishing it (abandoned, rolled back, its champion gone),
        in one transaction: its applied/served requests are queued again (`requeued`), its
        pending ones keep waiting with the reason (`event_name`), the batch is `failed`."""
        with self.session.begin() as s:
            t = now()
            b = s.get(Batch, batch_id)
            for rid in b.request_ids:
                req = s.get(Request, rid)
                if req.status in ("applied", "served"):
                    s.add(Event(at=t, request_id=rid, batch_id=batch_id, event="requeued",
                                detail={"from": req.status, "version": req.applied_version, "reason": why}))
                    req.applied_version = req.applied_at = req.served_at = None
                    req.forget_accuracy = req.mia = None
                elif req.status == "pending":
                    s.add(Event(at=t, request_id=rid, batch_id=batch_id, event=event_name, detail={"reason": why}))
                else:
                    continue  # purged or rejected: nothing to undo
                req.status, req.status_reason, req.updated_at, req.batch_id = "pending", why, t, None
            b.state, b.updated_at, b.detail = "failed", t, {**(b.detail or {}), **detail}
            s.add(Event(at=t, batch_id=batch_id, event="batch_failed", detail={"why": why, **detail}))

    def note(self, event_name: str, detail: dict[str, Any], request_ids: Iterable[str] = (), batch_id: str | None = None) -> None:
        """An audit event that is not a state change (e.g. a forced rollback)."""
        with self.session.begin() as s:
            t = now()
            ids = list(request_ids) or [None]
            for rid in ids:
                s.add(Event(at=t, request_id=rid, batch_id=batch_id, event=event_name, detail=detail))

    def purged_ids(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(PurgedSample.sample_id)))

    def purged_requests(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [r.to_dict() for r in s.scalars(select(Request).where(Request.status == "purged"))]

    # ---- batches ---------------------------------------------------------------

    def open_batch(self) -> dict[str, Any] | None:
        """The unfinished batch a crashed night left behind, if any."""
        with self.session() as s:
            b = s.scalar(select(Batch).where(Batch.state.not_in(("done", "failed"))).order_by(Batch.started_at))
            return _batch_dict(b) if b else None

    def start_batch(self, batch_id: str, parent_version: int, request_ids: Iterable[str] | None = None,
                    reforget: Iterable[str] = ()) -> dict[str, Any] | None:
        """Claim the pending requests (all, or those of `request_ids` still pending) for a new
        batch; None when there are none.

        `reforget`: purged requests whose data the parent still holds (it became champion
        by a forced rollback). Such a batch retrains from scratch, so it starts even when
        it claims no pending request; its detail keeps them for a resumed run."""
        reforget = sorted(reforget)
        with self.session.begin() as s:
            q = select(Request).where(Request.status == "pending").order_by(Request.received_at, Request.id)
            if request_ids is not None:
                q = q.where(Request.id.in_(list(request_ids)))
            reqs = list(s.scalars(q))
            if not reqs and not reforget:
                return None
            t = now()
            b = Batch(id=batch_id, state="open", request_ids=[r.id for r in reqs], started_at=t, updated_at=t,
                      parent_version=parent_version, detail={"reforget": reforget} if reforget else {})
            s.add(b)
            for r in reqs:
                r.batch_id, r.status_reason = batch_id, None
            s.add(Event(at=t, batch_id=batch_id, event="batch_started",
                        detail={"requests": len(reqs), "parent_version": parent_version,
                                **({"reforget": len(reforget)} if reforget else {})}))
            s.flush()
            return _batch_dict(b)

    def advance_batch(self, batch_id: str, state: str, **fields: Any) -> dict[str, Any]:
        with self.session.begin() as s:
            b = s.get(Batch, batch_id)
            detail = dict(b.detail or {})
            detail.update(fields.pop("detail", {}) or {})
            b.detail = detail
            for k, v in fields.items():
                setattr(b, k, v)
            b.state, b.updated_at = state, now()
            s.add(Event(at=b.updated_at, batch_id=batch_id, event=f"batch_{state}",
                        detail={k: v for k, v in fields.items() if k != "request_ids"} or None))
            s.flush()
            return _batch_dict(b)

    def batches(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [_batch_dict(b) for b in s.scalars(select(Batch).order_by(Batch.started_at))]

    # ---- the nightly lock --------------------------------------------------------

    def acquire_lock(self, name: str, stale_after: timedelta) -> str:
        """One holder across every machine that shares this database.

        A lock is taken over when its holder is gone: a dead process on this host, or
        no heartbeat for `stale_after` (another host that crashed). The old holder finds
        out at its next heartbeat or `check_lock` (`LockLost`) and stops. Two machines
        taking over at once: the delete names the old owner, so exactly one wins."""
        host, pid = socket.gethostname(), os.getpid()
        owner = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
        t = now()
        with self.session.begin() as s:
            held = s.get(Lock, name)
            if held is not None:
                dead = held.host == host and not pid_alive(held.pid)
                stale = t - _aware(held.heartbeat_at) > stale_after
                if not (dead or stale):
                    raise UserError(f"another nightly holds the lock since {iso(held.acquired_at)} "
                                    f"({held.owner}); wait for it to finish")
                gone = s.execute(delete(Lock).where(Lock.name == name, Lock.owner == held.owner)
                                 .execution_options(synchronize_session=False)).rowcount
                if gone != 1:  # another machine took it over between our read and our delete
                    raise UserError("another nightly took the lock a moment ago; wait for it to finish")
                s.expunge(held)
                s.add(Event(at=t, event="lock_taken_over", detail={"from": held.owner, "dead": dead, "stale": stale}))
            s.add(Lock(name=name, owner=owner, host=host, pid=pid, acquired_at=t, heartbeat_at=t))
            try:
                s.flush()
            except IntegrityError:  # another machine won the race
                raise UserError("another nightly took the lock a moment ago; wait for it to finish") from None
        return owner

    def check_lock(self, name: str, owner: str) -> None:
        """Raise `LockLost` unless `owner` still holds `name` (before a write that must be exclusive)."""
        with self.session() as s:
            held = s.get(Lock, name)
            if held is None or held.owner != owner:
                raise LockLost(f"the {name} lock was taken over by {held.owner if held else 'nobody'}; "
                               f"this run ({owner}) stops before writing anything more")

    def heartbeat(self, name: str, owner: str) -> bool:
        with self.session.begin() as s:
            n = s.execute(update(Lock).where(Lock.name == name, Lock.owner == owner).values(heartbeat_at=now())).rowcount
            return n == 1

    def release_lock(self, name: str, owner: str) -> None:
        with self.session.begin() as s:
            held = s.get(Lock, name)
            if held is not None and held.owner == owner:
                s.delete(held)


def _batch_dict(b: Batch) -> dict[str, Any]:
    return {"id": b.id, "state": b.state, "request_ids": list(b.request_ids), "started_at": iso(b.started_at),
            "updated_at": iso(b.updated_at), "parent_version": b.parent_version, "version": b.version,
            "run_id": b.run_id, "detail": dict(b.detail or {})}


def pid_alive(pid: int) -> bool:
    """Whether a process on this host is running (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return True
