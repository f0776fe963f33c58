"""`unlearn nightly`: forget every pending deletion request in one batch, safely re-runnable.

    unlearn nightly --workers 2 --method lur

One batch moves through these stages; each is recorded in the ledger's `batches`
table when it is done, so a night killed at any point resumes where it stopped:

    open        pending requests claimed by the batch (under the nightly lock)
    resolved    requests resolved to sample ids; unknown or already-purged ones rejected
    unlearned   unlearning on Ray from the champion (or, per policy, a full retrain; always
                a retrain when the champion holds purged data after a forced rollback)
    evaluated   RA/TA vs the parent, UA/MIA on the forget set, per-request accuracy
    gated       passed the gates (a failure ends the batch: nothing registered,
                requests back to pending with the reason)
    registered  MLflow version with lineage, `champion` moved, requests applied
    purged      serving confirmed the version on every replica, or it is proven that
                nothing serves (`jobs.served`); samples purged; requests served -> purged.
                Unconfirmed: nothing purged, the batch stays `registered`, exit code 4
    done        audit records written, old weights past their grace period deleted

The stage outputs that are not in the ledger (resolved ids, unlearned weights,
evaluation) live in $UNLEARN_HOME/nightly/BATCH and are written atomically.
`UNLEARN_TEST_CRASH_AFTER=<stage>` (resolve, unlearn, evaluate, gate, register, purge)
kills the process after that stage: the crash-safety tests use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from jobs.nightly_mlflow import log_run, register_batch
from jobs.nightly_report import evaluate_batch
from jobs.served import wait_until_served
from jobs.versions import contained_purged, housekeeping
from pipeline.artifacts import write_json
from pipeline.config import TrainConfig
from pipeline.datasets.store import purge_samples, read_store, snapshot_id, verify_purged
from pipeline.errors import UserError
from pipeline.models import load_checkpoint, save_checkpoint
from pipeline.ops.gates import check, failures
from pipeline.ops.home import Home
from pipeline.ops.ledger import HEARTBEAT_S, ISOLATED, NIGHTLY_LOCK, Ledger, LockLost
from pipeline.ops.nightly_config import NightlyConfig

LOCK = NIGHTLY_LOCK
CRASH_ENV = "UNLEARN_TEST_CRASH_AFTER"


def _crash_point(stage: str) -> None:
    if os.environ.get(CRASH_ENV) == stage:
        print(f"[test] crashing after stage {stage!r} ({CRASH_ENV})", flush=True)
        os._exit(75)


class Heartbeat(threading.Thread):
    """Keeps the nightly lock fresh so other machines can tell a live holder from a dead one,
    and finds out when this run lost it.

    A failed beat (the database away for a moment) is retried at the next one; a beat that
    finds the lock in another owner's hands ends the thread with `lost` set. `check()`,
    called before every stage's writes, turns either into `LockLost`: a run that may have
    been taken over re-reads the lock before it registers, purges or marks anything."""

    def __init__(self, ledger: Ledger, owner: str, every_s: float = HEARTBEAT_S):
        super().__init__(daemon=True, name="nightly-heartbeat")
        self.ledger, self.owner, self.every_s, self.stopped = ledger, owner, every_s, threading.Event()
        self.lost: str | None = None
        self.last_error: str | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                if not self.ledger.heartbeat(LOCK, self.owner):
                    self.lost = "the lock was taken over by another nightly (no heartbeat reached it in time)"
                    return
                self.last_error = None
            except Exception as e:  # keep beating: a blip is not a lost lock, `check` decides
                self.last_error = f"{type(e).__name__}: {e}"

    def check(self) -> None:
        if self.lost:
            raise LockLost(f"{self.lost}; this run ({self.owner}) stops before writing anything more")
        self.ledger.check_lock(LOCK, self.owner)


def run_nightly(home: Home, cfg: NightlyConfig, ray_opts, log=print) -> dict[str, Any]:
    """One batch, from pending requests to purged samples (or a failed gate)."""
    from pipeline.ray.cluster import check_reachable

    state = home.state()
    ledger, registry = home.ledger(), home.registry()
    if ray_opts.storage_path is None:  # in-flight checkpoints where housekeeping clears them
        ray_opts = dataclasses.replace(ray_opts, storage_path=str(home.train_runs))
    open_batch, champion = ledger.open_batch(), registry.champion()
    reforget = champion is not None and open_batch is None and contained_purged(registry, ledger, champion)
    if ledger.list("pending") or reforget or (open_batch and open_batch["state"] in ("open", "resolved")):
        # This night will run on Ray: an unreachable cluster must fail before the lock and the
        # batch, so it changes nothing. A night without Ray work (housekeeping) does not need it.
        check_reachable(ray_opts.address)
    owner = ledger.acquire_lock(LOCK, timedelta(minutes=cfg.lock_stale_minutes))
    beat = Heartbeat(ledger, owner)
    beat.start()
    try:
        batch = ledger.open_batch()
        if batch:
            log(f"resuming batch {batch['id']} from stage {batch['state']!r}")
            return _run_stages(home, state, ledger, registry, batch, cfg, ray_opts, log, beat.check)
        if registry.champion() is None:
            raise UserError("no champion model yet: run `unlearn init --dataset NAME` first")
        return _run_night(home, state, ledger, registry, cfg, ray_opts, log, beat.check)
    finally:
        beat.stopped.set()
        ledger.release_lock(LOCK, owner)


def abandon_batch(home: Home, cfg: NightlyConfig, log=print) -> dict[str, Any]:
    """`unlearn nightly --abandon`: give up the open batch (one stuck at `registered`
    because serving never confirms, say) instead of finishing it.

    Under the lock. Refused once the batch purged: its samples are gone, only finishing
    it is left. A version it registered stops being champion (back to its parent, when
    it still is champion) and its requests go back to pending; so do the requests of a
    batch abandoned earlier. Nothing is purged; the audit trail says who gave up what."""
    ledger, registry = home.ledger(), home.registry()
    owner = ledger.acquire_lock(LOCK, timedelta(minutes=cfg.lock_stale_minutes))
    try:
        batch = ledger.open_batch()
        if batch is None:
            raise UserError("there is no open batch to abandon")
        bid, version, parent = batch["id"], batch["version"], batch["parent_version"]
        if batch["state"] == "purged":
            raise UserError(f"batch {bid} already purged its samples: it cannot be undone; run `unlearn nightly` "
                            f"to finish it (audit records, housekeeping)")
        moved = version is not None and version != parent and registry.champion() == version
        if moved:
            registry.load(parent)  # the parent must load before it serves again
            registry.set_champion(parent)
        why = f"batch {bid} was abandoned by the operator at stage {batch['state']!r}; pending again"
        ledger.drop_batch(bid, why, "abandoned", {"abandoned_at": batch["state"],
                                                  **({"champion_back_to": parent} if moved else {})})
        shutil.rmtree(home.nightly_dir / bid, ignore_errors=True)
        log(f"abandoned batch {bid} at {batch['state']!r}: {len(batch['request_ids'])} request(s) pending again"
            + (f"; champion back to v{parent} (v{version} stays registered, not served)" if moved else ""))
        return {"batch": bid, "state": "abandoned", "champion": registry.champion()}
    finally:
        ledger.release_lock(LOCK, owner)


def plan_night(pending: list[dict[str, Any]]) -> list[list[str]]:
    """The night's batches, in order: every pending request not set apart, together; then
    each set-apart one (`ISOLATED`) alone, so it can never hold the others back again."""
    isolated = [r["request_id"] for r in pending if (r["status_reason"] or "").startswith(ISOLATED)]
    rest = [r["request_id"] for r in pending if r["request_id"] not in isolated]
    return ([rest] if rest else []) + [[r] for r in isolated]


def halves(request_ids: list[str]) -> list[list[str]]:
    """A failed batch's two halves, in order (the larger first)."""
    half = (len(request_ids) + 1) // 2
    return [request_ids[:half], request_ids[half:]]


def _run_night(home, state, ledger, registry, cfg, ray_opts, log, still_ours) -> dict[str, Any]:
    """Every pending request, in as few batches as the gates allow.

    The pending requests go in one batch. A batch that fails the gates is split in two
    and each half tried on its own (bisection), so one request that cannot pass (say, a
    whole class, which no approximate unlearning removes within the TA gate) does not
    block the others: they are forgotten the same night. A request that fails alone
    stays pending with the reason (`ISOLATED`); later nights try it in a batch of its
    own after the others, so it never blocks them again.

    A champion that holds the data of purged requests (a forced rollback made it champion)
    makes the night's first batch a full retrain on the store, which no longer has their
    samples: the only way to forget them again. It runs even with no pending request."""
    pending = ledger.list("pending")
    if not pending and not contained_purged(registry, ledger, registry.champion()):
        log("no pending deletion requests")
        housekeeping(ledger, registry, cfg.grace_days, log, home)
        return {"batch": None, "state": "nothing to do"}
    queue = plan_night(pending) or [[]]
    outs: list[dict[str, Any]] = []
    while queue:
        ids = queue.pop(0)
        champion = registry.champion()
        reforget = [r["request_id"] for r in contained_purged(registry, ledger, champion)]
        batch = ledger.start_batch(f"night-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}", champion, ids,
                                   reforget)
        if batch is None:
            continue
        log(f"batch {batch['id']}: {len(batch['request_ids'])} pending requests, champion v{champion}"
            + (f"; v{champion} holds the data of {len(reforget)} purged requests (a forced rollback): "
               f"this batch retrains from scratch to forget them again" if reforget else ""))
        out = _run_stages(home, state, ledger, registry, batch, cfg, ray_opts, log, still_ours)
        outs.append(out)
        if out["state"] == "failed" and out.get("gate_failed") and reforget:
            break  # the retrain failed, not a request: splitting would retrain again for nothing
        if out["state"] == "failed" and out.get("gate_failed"):
            tried = out["request_ids"]
            if len(tried) > 1:
                queue[:0] = halves(tried)
                log(f"splitting the {len(tried)} requests of {batch['id']} in two to find the one(s) that fail")
            else:
                still_ours()
                why = f"{ISOLATED} (batch {batch['id']}: {out['reason']}); the others were not held back"
                ledger.keep_pending(tried, why, batch["id"], event_name="isolated")
                out["isolated"] = tried
                log(f"request {tried[0]} {why}")
        elif out["state"] != "done":
            break  # e.g. registered but unconfirmed: no new batch while this one is open
    if len(outs) == 1:
        return outs[0]
    done = [o for o in outs if o["state"] == "done"]
    last = (done or outs)[-1]
    held = [r for o in outs for r in o.get("isolated", [])]
    return {**last, "batches": outs, "isolated": held,
            "state": outs[-1]["state"] if outs[-1]["state"] not in ("done", "failed") else
            ("done" if done else "failed"),
            "requests": sum(o.get("requests", 0) for o in done)}


def _run_stages(home, state, ledger, registry, batch, cfg, ray_opts, log, still_ours) -> dict[str, Any]:
    """The stages from wherever the batch stands. `still_ours()` raises `LockLost` when this
    run no longer holds the lock; it is called before every stage that writes."""
    work = home.nightly_dir / batch["id"]
    store = home.store()
    bid = batch["id"]
    reforget = batch["detail"].get("reforget", [])  # purged requests the parent holds: retrain

    if batch["state"] == "open":
        still_ours()
        purge_resurfaced(ledger, store, bid, log)
        resolved, rejected, test_ids = resolve(ledger, store, batch["request_ids"])
        write_json(work / "resolved.json", {"resolved": resolved, "test_ids": test_ids})
        if rejected:
            ledger.reject(rejected, bid)
            for rid, why in rejected.items():
                log(f"rejected {rid}: {why}")
        n = len({s for ids in resolved.values() for s in ids})
        batch = ledger.advance_batch(bid, "resolved", request_ids=list(resolved), detail={"n_forget": n})
        _crash_point("resolve")
    resolved_doc = json.loads((work / "resolved.json").read_text())
    resolved = {r: resolved_doc["resolved"][r] for r in batch["request_ids"]}
    forget_ids = sorted({s for ids in resolved.values() for s in ids})

    if not resolved and not reforget:
        ledger.advance_batch(bid, "done")
        shutil.rmtree(work, ignore_errors=True)
        log("every request was rejected; nothing to unlearn")
        return {"batch": bid, "state": "done", "requests": 0}

    parent = batch["parent_version"]
    if batch["state"] == "resolved":
        still_ours()
        if forget_ids or reforget:
            summary = _unlearn(home, state, registry, parent, store, forget_ids, cfg, ray_opts, work, log, reforget)
        else:  # only test-set samples: the model never learned from them; nothing to unlearn
            summary = {"method": "none"}
        still_ours()  # unlearning took minutes: check again before recording it
        batch = ledger.advance_batch(bid, "unlearned", detail={"method": summary["method"]})
        _crash_point("unlearn")

    if batch["state"] == "unlearned" and not forget_ids and not reforget:  # the champion never learned from them
        still_ours()
        ledger.mark_applied(resolved, parent, bid, {})
        batch = ledger.advance_batch(bid, "registered", version=parent)
    if batch["state"] == "unlearned":
        still_ours()
        new, _ = load_checkpoint(work / "model")
        parent_model, _ = registry.load(parent)
        train, test = read_store(store)
        keep_test = ~np.isin(test.sample_ids, [s for ids in resolved_doc["test_ids"].values() for s in ids])
        evaluation = evaluate_batch(new, parent_model, train, test.subset(keep_test), resolved, seed=cfg.seed)
        evaluation["store_snapshot"], evaluation["store"] = snapshot_id(train.sample_ids), str(store)
        write_json(work / "evaluation.json", evaluation)
        e, p = evaluation["new"], evaluation["parent"]
        log(f"new: {metrics_line(e)} | parent v{parent}: {metrics_line(p)}")
        batch = ledger.advance_batch(bid, "evaluated")
        _crash_point("evaluate")

    if batch["state"] == "evaluated":
        still_ours()
        evaluation = json.loads((work / "evaluation.json").read_text())
        gates = check(evaluation["new"], evaluation["parent"], evaluation["n_forget"], cfg.gates,
                      evaluation["new"]["weights_finite"])
        evaluation["gates"] = gates
        write_json(work / "evaluation.json", evaluation)
        if not all(g["passed"] for g in gates):
            why = f"gate failed in batch {bid}: {failures(gates)}"
            run_id = log_run(registry, bid, batch, evaluation, work, "gate_failed", cfg)
            registry.end_run(run_id, "FAILED")
            ledger.keep_pending(batch["request_ids"], why, bid)
            ledger.advance_batch(bid, "failed", run_id=run_id, detail={"gates": gates})
            shutil.rmtree(work, ignore_errors=True)
            log(f"{why}\nthe champion stays v{parent}; the requests stay pending")
            return {"batch": bid, "state": "failed", "reason": why, "run_id": run_id, "gate_failed": True,
                    "request_ids": list(batch["request_ids"])}
        batch = ledger.advance_batch(bid, "gated", detail={"gates": gates})
        _crash_point("gate")

    if batch["state"] == "gated":
        still_ours()
        purged_before = [r["request_id"] for r in ledger.purged_requests()]  # a retrain excludes them all
        version, run_id = register_batch(state, registry, batch, resolved, cfg, work, log, purged_before)
        evaluation = json.loads((work / "evaluation.json").read_text())
        ledger.mark_applied(resolved, version, bid, evaluation["new"]["per_request"])
        batch = ledger.advance_batch(bid, "registered", version=version, run_id=run_id)
        log(f"registered {registry.name} v{version} (parent v{parent}); champion -> v{version}")
        _crash_point("register")

    version = batch["version"]
    if batch["state"] == "registered" and registry.champion() != version:
        # the champion moved away (a rollback) while this batch waited: never purge for a
        # version that is not served; its requests go back to the queue
        why = f"the champion is v{registry.champion()}, not this batch's v{version}"
        still_ours()
        ledger.drop_batch(bid, f"queued again: {why}", "champion_moved", {"champion_moved": why})
        shutil.rmtree(work, ignore_errors=True)
        log(f"batch {bid}: {why}; nothing purged, its requests are pending again")
        return {"batch": bid, "state": "failed", "reason": why}
    if batch["state"] == "registered":
        still_ours()
        verdict = wait_until_served(home, version, cfg.serve_wait_s, log, ray_opts.address)
        if verdict.outcome is None:  # fail closed: nothing is purged on anything short of proof
            log(f"not purging: serving has not confirmed v{version} on every replica ({verdict.why}). "
                f"The requests stay applied; re-run `unlearn nightly` once serving is healthy")
            ledger.note("serving_unconfirmed", {"version": version, "why": verdict.why}, batch_id=bid)
            return {"batch": bid, "state": "registered", "version": version, "unconfirmed": verdict.why}
        log(f"v{version}: {verdict.outcome} ({verdict.why})")
        still_ours()  # the wait took up to serve_wait_s
        ledger.mark_served(resolved, version, bid, verdict.outcome)
        if reforget:  # served now by a version trained without them
            ledger.note("forgotten_again", {"version": version, "method": "retrain", "after": "forced rollback"},
                        reforget, bid)
        gone = set(forget_ids) | {s for ids in resolved_doc["test_ids"].values() for s in ids}
        removed = purge_samples(store, gone)
        verify_purged(store, gone)  # before a single request is marked purged
        train_after, _ = read_store(store)
        ledger.mark_purged(resolved, bid, resolved_doc["test_ids"])
        batch = ledger.advance_batch(bid, "purged", detail={"removed": removed,
                                                            "store_snapshot_after": snapshot_id(train_after.sample_ids)})
        log(f"purged {removed['train']} train and {removed['test']} test rows from the store")
        _crash_point("purge")

    if batch["state"] == "purged":
        still_ours()
        for rid in resolved:
            record = ledger.get(rid)
            ledger.note("audit", {k: record[k] for k in ("received_at", "model_version", "applied_at", "served_at",
                                                         "purged_at", "forget_accuracy", "mia", "n_samples")},
                        [rid], bid)
        housekeeping(ledger, registry, cfg.grace_days, log, home)
        shutil.rmtree(work, ignore_errors=True)
        ledger.advance_batch(bid, "done")
    return {"batch": bid, "state": "done", "version": version, "requests": len(resolved), "forgotten": len(forget_ids),
            **({"reforgotten": len(reforget)} if reforget else {})}


def metrics_line(m: dict[str, Any]) -> str:
    """UA/RA/TA/MIA for the log; UA and MIA are '-' for a batch with no forget set."""
    def f(k, digits):
        return "-" if m.get(k) is None else f"{m[k]:.{digits}f}"
    return f"UA {f('UA', 1)} RA {f('RA', 2)} TA {f('TA', 2)} MIA {f('MIA', 1)}"


def purge_resurfaced(ledger: Ledger, store: Path, batch_id: str | None, log=print) -> set[str]:
    """Purged ids are tombstones (`purged_samples`): rows that came back into the store (a
    restored backup, a re-exported source) are deleted again before anything trains on
    them, and the audit trail says so."""
    tomb = ledger.purged_ids()
    train, test = read_store(store)
    back = (set(train.sample_ids.tolist()) | set(test.sample_ids.tolist())) & tomb
    if back:
        purge_samples(store, back)
        verify_purged(store, back)
        ledger.note("purged_again", {"samples": len(back), "e.g.": sorted(back)[:5],
                                     "why": "purged rows reappeared in the store"}, batch_id=batch_id)
        log(f"{len(back)} purged samples had reappeared in the store (e.g. {sorted(back)[0]}): deleted again")
    return back


def resolve(ledger: Ledger, store: Path, request_ids: list[str]):
    """Request -> train sample ids (what the model learned from) and test sample ids
    (held-out rows that are purged too).

    A request is rejected only when it names nothing left to forget. A request whose ids
    are partly unknown or already purged still forgets the rest: the person's other
    samples must not stay because one id was wrong; the audit trail says which were
    skipped and why (`partly_resolved`)."""
    train, test = read_store(store)
    purged_by = {r["subject_id"]: r["request_id"] for r in ledger.purged_requests() if r["subject_id"]}
    tomb = ledger.purged_ids()
    train_ids, test_ids = set(train.sample_ids.tolist()), set(test.sample_ids.tolist())
    resolved, rejected, test_hits = {}, {}, {}
    for rid in request_ids:
        req = ledger.get(rid)
        if req["subject_id"] is not None:
            sid = req["subject_id"]
            tr = [s for s in train.sample_ids[train.subject_ids == sid].tolist() if s not in tomb]
            te = [s for s in test.sample_ids[test.subject_ids == sid].tolist() if s not in tomb]
            if not tr and not te:
                rejected[rid] = (f"subject {sid!r} has no samples in the store"
                                 + (f": already purged by request {purged_by[sid]}" if sid in purged_by else ""))
                continue
        else:
            ids = req["sample_ids"]
            tr = [s for s in ids if s in train_ids and s not in tomb]
            te = [s for s in ids if s in test_ids and s not in tomb]
            gone = [s for s in ids if s in tomb]
            unknown = [s for s in ids if s not in train_ids and s not in test_ids and s not in tomb]
            skipped = "; ".join(([f"{len(unknown)} unknown sample ids (e.g. {unknown[0]!r})"] if unknown else [])
                                + ([f"{len(gone)} samples already purged (e.g. {gone[0]!r})"] if gone else []))
            if not tr and not te:
                rejected[rid] = skipped
                continue
            if skipped:
                ledger.note("partly_resolved", {"forgetting": len(tr) + len(te), "skipped": skipped,
                                                "unknown": unknown[:100], "already_purged": gone[:100]}, [rid])
        resolved[rid], test_hits[rid] = sorted(tr), sorted(te)
    return resolved, rejected, test_hits


def _unlearn(home, state, registry, parent, store, forget_ids, cfg, ray_opts, work, log,
             reforget: list[str] = ()) -> dict[str, Any]:
    """Unlearn on Ray from the parent (the champion), or retrain from scratch when the
    policy says the approximate line has drifted far enough, or when the parent holds the
    data of purged requests (`reforget`: their samples are gone, nothing can unlearn them)."""
    from pipeline.configs import default_config_path, load_run_configs, nightly_method_config
    from pipeline.ray.train import train_on_ray, unlearn_on_ray

    model, card = registry.load(parent)
    tags = registry.tags(parent)
    rounds, forgotten = tags.rounds_since_retrain, tags.forgotten_since_retrain
    base_rows = tags.exact_train_rows or 1
    share = 100.0 * (forgotten + len(forget_ids)) / base_rows
    train, _ = read_store(store)
    card = {k: v for k, v in card.items() if k not in ("cost", "lineage")}
    start = time.perf_counter()
    if reforget or rounds >= cfg.retrain.after_rounds or share > cfg.retrain.above_forgotten_pct:
        why = (f"v{parent} holds the data of {len(reforget)} purged requests" if reforget
               else f"{rounds} unlearning rounds since the last exact model" if rounds >= cfg.retrain.after_rounds
               else f"{share:.1f} % of the exact model's data forgotten since")
        log(f"retrain policy: {why}; training from scratch on {len(train) - len(forget_ids)} retained samples")
        train_cfg = TrainConfig.from_dict(card["train_config"])
        new, summary = train_on_ray(card, str(store), forget_ids, train_cfg, ray_opts, home.root,
                                    rows=len(train) - len(forget_ids))
        summary = {"method": "retrain", "reason": why, "config": train_cfg.to_dict(), **summary,
                   "rounds_since_retrain": 0, "forgotten_since_retrain": 0, "exact_train_rows": len(train) - len(forget_ids)}
    else:
        configs, _ = load_run_configs(Path(state.get("config") or default_config_path(state["dataset"])))
        ucfg = nightly_method_config(configs, cfg.method, cfg.seed)
        log(f"unlearning {len(forget_ids)} samples with {cfg.method} on {ray_opts.workers} Ray worker(s) from v{parent}")
        new, summary = unlearn_on_ray(model, card, str(store), forget_ids, ucfg, ray_opts, home.root)
        summary = {"method": cfg.method, "config": ucfg.to_dict(), **summary, "rounds_since_retrain": rounds + 1,
                   "forgotten_since_retrain": forgotten + len(forget_ids), "exact_train_rows": base_rows}
    summary["seconds_total"] = time.perf_counter() - start
    # The run's in-flight checkpoints hold intermediate weights: they go with the batch.
    shutil.rmtree(Path(summary.get("storage_path", "/nonexistent")) / summary.get("run_name", "-"), ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as d:  # same filesystem: the rename is atomic
        save_checkpoint(Path(d) / "model", new, card)
        write_json(Path(d) / "model" / "unlearn.json", summary)
        shutil.rmtree(work / "model", ignore_errors=True)
        os.replace(Path(d) / "model", work / "model")
    return summary
