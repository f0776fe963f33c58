"""What each registered version still contains, and the commands that depend on it:
`unlearn rollback`, `unlearn audit`, `unlearn versions`, and the grace-period deletion
of weights that still hold purged data.

A version excludes the requests its own batch applied plus everything its parent
excluded (`excluded_requests` in its lineage.json); a full retrain excludes every request
purged before it, whatever its parent held (it was trained on a store without them). It
*contains* a purged request when that request is not among them and resolved to train
rows (a request that hit only test rows was never learned by any version): such a
version must not be served again silently.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.ops.ledger import NIGHTLY_LOCK, Ledger, iso, now
from pipeline.ops.lineage import VersionTags
from pipeline.ops.registry import Registry


def excluded_requests(registry: Registry, version: int) -> list[str]:
    lineage = registry.lineage(version)
    return list(lineage.excluded_requests) if lineage else []


def trained_on(request: dict[str, Any]) -> bool:
    """Whether any model learned from the request's samples: it resolved to train rows. A
    request that hit only held-out test rows was never in any version's training data."""
    return bool(request["n_samples"])


def contained_purged(registry: Registry, ledger: Ledger, version: int) -> list[dict[str, Any]]:
    """Purged requests whose data `version` was trained with (and never unlearned)."""
    excluded = set(excluded_requests(registry, version))
    return [r for r in ledger.purged_requests() if trained_on(r) and r["request_id"] not in excluded]


def contained_requests(registry: Registry, ledger: Ledger, version: int) -> list[dict[str, Any]]:
    """Every request some version already forgot (applied, served or purged) whose data
    `version` still holds: what serving `version` again would undo."""
    excluded = set(excluded_requests(registry, version))
    return [r for status in ("applied", "served", "purged") for r in ledger.list(status)
            if trained_on(r) and r["request_id"] not in excluded]


def clear_folders(directory: Path, what: str, keep: set[str] = frozenset(), log=print) -> int:
    """Remove every folder under `directory` but those named in `keep`. For the project's
    scratch copies of weights (the caller holds the nightly lock): Ray Train run folders
    (in-flight checkpoints) and the work folders of batches no longer open (unlearned
    weights of an abandoned or rolled-back night). The registry alone keeps weights."""
    import shutil

    gone = [p for p in Path(directory).glob("*") if p.is_dir() and p.name not in keep] \
        if Path(directory).exists() else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    if gone:
        log(f"removed {len(gone)} {what} from {directory}")
    return len(gone)


def clear_cached_models(models_dir: Path, dataset: str, log=print) -> int:
    """Cached originals/retrains (`$UNLEARN_HOME/models`, for `bench` and `forget`) of the
    deployment's dataset were trained on its full data, purged people included."""
    import json
    import shutil

    gone = 0
    for card in Path(models_dir).glob("*/model.json") if Path(models_dir).exists() else []:
        try:
            same = json.loads(card.read_text()).get("dataset") == dataset
        except (OSError, ValueError):
            same = True  # unreadable: cannot prove it is another dataset's
        if same:
            shutil.rmtree(card.parent, ignore_errors=True)
            gone += 1
    if gone:
        log(f"removed {gone} cached model(s) of {dataset} from {models_dir}: trained on data since purged")
    return gone


def housekeeping(ledger: Ledger, registry: Registry, grace_days: float, log=print, home=None) -> list[int]:
    """Delete the weights of versions that still contain purged data once the grace
    period since the first such purge has passed. The champion is never touched. With
    `home`, also every other copy the project wrote: Ray Train run folders, work folders
    of batches no longer open, and cached models of the deployment's dataset once a purge
    passed its grace period."""
    if home is not None:
        clear_folders(home.train_runs, "Ray Train run folder(s) with in-flight checkpoints", log=log)
        batch = ledger.open_batch()
        clear_folders(home.nightly_dir, "work folder(s) of batches no longer open", {batch["id"]} if batch else set(),
                      log)
    champion, deleted = registry.champion(), []
    for v in registry.versions():
        if v["version"] == champion or VersionTags.from_tags(v["tags"]).weights_deleted_at:
            continue
        held = contained_purged(registry, ledger, v["version"])
        if not held:
            continue
        first = min(datetime.fromisoformat(r["purged_at"]) for r in held)
        if now() - first >= timedelta(days=grace_days):
            registry.delete_weights(v["version"], iso(now()))
            ledger.note("weights_deleted", {"version": v["version"], "contained_requests": len(held),
                                            "grace_days": grace_days})
            deleted.append(v["version"])
    if deleted:
        log(f"deleted the weights of v{', v'.join(map(str, deleted))}: they contained purged data and their "
            f"{grace_days:g}-day grace period has passed")
    past_grace = [r for r in ledger.purged_requests() if trained_on(r)
                  and now() - datetime.fromisoformat(r["purged_at"]) >= timedelta(days=grace_days)]
    if home is not None and past_grace:
        clear_cached_models(home.root / "models", home.state().get("dataset", ""), log)
    return deleted


def rollback(ledger: Ledger, registry: Registry, to: int | None, force: bool, log=print,
             lock_stale_minutes: float = 30.0) -> int:
    """Point `champion` at an older version; refuse one that still holds the data of any
    request already forgotten (applied, served or purged) unless forced.

    Under the nightly lock: a night cannot register or purge while the champion moves. A
    forced rollback is recorded per affected request (`served_again_by_forced_rollback`).
    Requests not yet purged (their samples are still in the store) and a batch waiting for
    serving to confirm the version rolled away from are put back to pending, so the next
    night forgets them again from the new champion. Purged requests cannot be unlearned
    (their samples are gone from the store): the next night sees a champion holding their
    data and retrains it from scratch on the store without them (`forgotten_again`)."""
    champion = registry.champion()
    if champion is None:
        raise UserError("no champion model yet: run `unlearn init --dataset NAME` first")
    if to is None:
        to = registry.tags(champion).parent_version
        if to is None:
            raise UserError(f"v{champion} has no parent version to roll back to; name one with --to")
    if to == champion:
        raise UserError(f"v{to} is already the champion")
    registry.version(to)  # exists?
    held = contained_requests(registry, ledger, to)
    if held and not force:
        by = {st: sum(r["status"] == st for r in held) for st in ("applied", "served", "purged")}
        raise UserError(f"v{to} still holds the data of {len(held)} deletion requests already forgotten "
                        f"({', '.join(f'{n} {st}' for st, n in by.items() if n)}; e.g. {held[0]['request_id']}): "
                        f"it contains the data of people who asked to be forgotten. Pass --force only if you "
                        f"must: the requests not yet purged are then queued again, the purged ones recorded")
    owner = ledger.acquire_lock(NIGHTLY_LOCK, timedelta(minutes=lock_stale_minutes))
    try:
        registry.load(to)  # its weights must exist and verify before it is served
        registry.set_champion(to)
        ledger.note("rollback", {"from": champion, "to": to, "forced": bool(held),
                                 "contained_requests": len(held)})
        why = f"queued again: forced rollback v{champion} -> v{to} serves their data"
        batch = ledger.open_batch()
        in_batch = set(batch["request_ids"]) if batch else set()
        if batch and batch["version"] is not None and batch["version"] != to:
            # the night that registered the version rolled away from must not purge for it
            ledger.drop_batch(batch["id"], why, "rolled_back", {"rolled_back": f"v{champion} -> v{to}"})
        else:
            in_batch = set()
        if held:
            ledger.note("served_again_by_forced_rollback", {"version": to, "from": champion},
                        [r["request_id"] for r in held])
        again = [r["request_id"] for r in held if r["status"] in ("applied", "served")]
        if rest := [r for r in again if r not in in_batch]:
            ledger.requeue(rest, why)
        purged = [r for r in held if r["status"] == "purged"]
        if held:
            log(f"WARNING: v{to} holds the data of {len(held)} deletion requests; it is champion now because of "
                f"--force. {len(again)} not yet purged are queued again for the next night"
                + (f"; {len(purged)} purged ones cannot be unlearned (their samples are gone): the next "
                   f"night retrains from scratch without them" if purged else ""))
    finally:
        ledger.release_lock(NIGHTLY_LOCK, owner)
    log(f"champion: v{champion} -> v{to}")
    return to


def audit_record(ledger: Ledger, request_id: str) -> dict[str, Any]:
    record = ledger.get(request_id)
    record["events"] = ledger.events(request_id=request_id)
    return record


def format_audit(record: dict[str, Any]) -> str:
    def pct(x):
        return "-" if x is None else f"{x:.1f} %"

    what = f"subject {record['subject_id']}" if record["subject_id"] else f"{len(record['sample_ids'])} sample ids"
    lines = [
        f"request      {record['request_id']}  ({what})",
        f"status       {record['status']}" + (f"  ({record['status_reason']})" if record["status_reason"] else ""),
        f"received     {record['received_at']}",
        "applied in   " + (f"version {record['model_version']} at {record['applied_at']}" if record["model_version"] else "-"),
        f"served at    {record['served_at'] or '-'}",
        f"purged at    {record['purged_at'] or '-'}",
        f"samples      {record['n_samples'] if record['n_samples'] is not None else '-'}",
        f"forget acc.  {pct(record['forget_accuracy'])}  (version {record['model_version'] or '-'} on its samples)",
        f"MIA-Efficacy {pct(record['mia'])}",
        "events:",
    ]
    for e in record["events"]:
        detail = ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items())
        lines.append(f"  {e['at']}  {e['event']:<12} {detail}")
    return "\n".join(lines)


def version_records(registry: Registry, ledger: Ledger) -> list[dict[str, Any]]:
    """Every registered version with its lineage, metrics and what it still contains."""
    champion, versions = registry.champion(), registry.versions()
    if champion is None and not versions:
        raise UserError(f"no champion model yet: {registry.name} has no versions in MLflow at {registry.uri} "
                        f"(run `unlearn init --dataset NAME`, or check MLFLOW_TRACKING_URI)")
    out = []
    for v in versions:
        t = VersionTags.from_tags(v["tags"])
        deleted = t.weights_deleted_at
        out.append({"version": v["version"], "parent_version": t.parent_version, "method": t.method,
                    "request_count": t.request_count, "metrics": t.metrics(),
                    "champion": v["version"] == champion, "weights_deleted_at": deleted,
                    "contains_purged_data": bool(not deleted and contained_purged(registry, ledger, v["version"]))})
    return out


def format_versions(records: list[dict[str, Any]]) -> str:
    rows = [f"{'ver':>4}  {'parent':>6}  {'method':<12} {'requests':>8}  {'UA':>6} {'RA':>6} {'TA':>6} {'MIA':>6}  note"]
    for r in records:
        notes = ["champion"] * r["champion"] + ["weights deleted"] * bool(r["weights_deleted_at"]) \
            + ["contains purged data"] * r["contains_purged_data"]
        m = {k: f"{r['metrics'][k]:.2f}" if k in r["metrics"] else "-" for k in ("UA", "RA", "TA", "MIA")}
        rows.append(f"{r['version']:>4}  {r['parent_version'] if r['parent_version'] is not None else '':>6}  "
                    f"{r['method'] or '-':<12} {r['request_count']:>8}  {m['UA']:>6} {m['RA']:>6} {m['TA']:>6} "
                    f"{m['MIA']:>6}  {', '.join(notes)}")
    return "\n".join(rows)
