"""The nightly batch's MLflow side: the night's run (params, metrics, plots, evaluation)
and the registration of its version with lineage, exactly once per batch."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from jobs.nightly_report import plot_batch
from jobs.versions import excluded_requests
from pipeline.artifacts import write_json
from pipeline.datasets.store import snapshot_id
from pipeline.errors import UserError
from pipeline.models import config_hash, load_checkpoint
from pipeline.ops.lineage import METRIC_TAGS, Lineage
from pipeline.ops.registry import Registry


def log_run(registry: Registry, bid: str, batch, evaluation, work: Path, outcome: str, cfg) -> str:
    """The night's MLflow run: params, metrics, per-step conflict, plots, evaluation JSON."""
    summary = json.loads((work / "model" / "unlearn.json").read_text()) if (work / "model" / "unlearn.json").exists() else {}
    run_id = registry.start_run(bid, {"batch_id": bid, "outcome": outcome, "parent_version": str(batch["parent_version"]),
                                      "mlflow.note.content": f"Nightly unlearning batch {bid}: {outcome}"})
    params = {"method": summary.get("method"), "parent_version": batch["parent_version"],
              "n_requests": len(batch["request_ids"]), "n_forget": evaluation["n_forget"],
              "workers": summary.get("workers"), "retrain_reason": summary.get("reason", "")}
    params.update({f"unlearn.{k}": v for k, v in (summary.get("config") or {}).items()})
    params.update({f"gates.{k}": v for k, v in cfg.gates.to_dict().items()})
    metrics = {k: evaluation["new"][k] for k in ("UA", "RA", "TA", "MIA")}  # None (no forget set) is not logged
    metrics.update({f"parent_{k}": evaluation["parent"][k] for k in ("UA", "RA", "TA", "MIA")})
    metrics.update(delta_TA=evaluation["new"]["TA"] - evaluation["parent"]["TA"],
                   delta_RA=evaluation["new"]["RA"] - evaluation["parent"]["RA"],
                   loop_seconds=summary.get("seconds"), wall_seconds=summary.get("wall_seconds"),
                   conflict_share=summary.get("conflict_share"), conflict_mean_cos=summary.get("conflict_mean_cos"))
    metrics.update({f"gate_{g['gate']}": g["value"] for g in evaluation.get("gates", [])})
    registry.log(run_id, params, metrics)
    conflict = [tuple(c) for c in summary.get("conflict", [])]
    times = summary.get("step_times") or None
    if conflict:
        registry.log_step_metric(run_id, "conflict_cos", conflict, times)
    if summary.get("losses"):
        registry.log_step_metric(run_id, "loss", list(enumerate(summary["losses"], start=1)), times)
    if evaluation.get("store"):  # the train table the batch saw (before its purge), by its snapshot id
        registry.log_dataset(run_id, Path(evaluation["store"]).name, evaluation["store_snapshot"], evaluation["store"],
                             "train", evaluation["n_forget"] + evaluation["n_retain"])
    with tempfile.TemporaryDirectory() as d:
        plot_batch(evaluation, conflict, Path(d) / "plots")
        write_json(Path(d) / "evaluation.json", evaluation)
        write_json(Path(d) / "unlearn.json", {k: v for k, v in summary.items()
                                              if k not in ("conflict", "losses", "step_times")})  # curves: metrics
        registry.log_artifacts(run_id, Path(d))
    return run_id


def register_batch(state, registry: Registry, batch, resolved, cfg, work: Path, log,
                   purged_before: list[str] = ()) -> tuple[int, str]:
    """Register the batch's version exactly once and point `champion` at it.

    The version is tagged with the batch id: after a crash, a re-run finds the version it
    already created (and whose weights verify) instead of registering a second one."""
    bid, parent = batch["id"], batch["parent_version"]
    found = registry.find_batch(bid)
    if found is not None:
        try:
            serving_check(registry, found, parent)  # verifies the weights' hash, as a replica would
            registry.set_champion(found)
            return found, registry.version(found)["run_id"]
        except UserError:
            log(f"v{found} from an interrupted registration does not verify; registering again")
            registry.set_version_tag(found, "abandoned", "weights did not verify")
    for run in registry.runs_tagged("batch_id", bid):  # a run left RUNNING by a crash
        if run.info.status == "RUNNING":
            registry.end_run(run.info.run_id, "FAILED")
    evaluation = json.loads((work / "evaluation.json").read_text())
    summary = json.loads((work / "model" / "unlearn.json").read_text())
    model, card = load_checkpoint(work / "model")
    run_id = log_run(registry, bid, batch, evaluation, work, "registered", cfg)
    reforget = batch["detail"].get("reforget", [])
    if summary["method"] == "retrain":
        # trained from scratch on a store that holds no purged sample: it excludes every
        # request purged before it, whatever its parent still held
        excluded = sorted(set(purged_before) | set(resolved))
    else:
        excluded = sorted(set(excluded_requests(registry, parent)) | set(resolved))
    lineage = Lineage(
        summary=f"{summary['method']} of {len(resolved)} deletion requests ({evaluation['n_forget']} samples) "
                f"from v{parent}" + (f"; forgets again {len(reforget)} purged requests v{parent} held (a forced "
                                     f"rollback)" if reforget else ""),
        batch_id=bid, parent_version=parent, method=summary["method"], config=summary.get("config"),
        config_hash=config_hash(summary.get("config")), dataset=state["dataset"],
        store_snapshot=evaluation["store_snapshot"], request_ids=sorted(resolved), excluded_requests=excluded,
        metrics={k: evaluation["new"][k] for k in METRIC_TAGS if evaluation["new"][k] is not None},
        parent_metrics={k: evaluation["parent"][k] for k in METRIC_TAGS if evaluation["parent"][k] is not None},
        gates=evaluation["gates"],
        forget_ids_sha256=snapshot_id(sorted({s for v in resolved.values() for s in v})),
        rounds_since_retrain=summary["rounds_since_retrain"], forgotten_since_retrain=summary["forgotten_since_retrain"],
        exact_train_rows=summary["exact_train_rows"])
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "model_card.md").write_text(model_card_md(registry.name, card, lineage, evaluation))
        version = registry.register(run_id, model, card, lineage, extra_dir=Path(d))
    serving_check(registry, version, parent)  # before the alias moves, not after a replica tried
    registry.set_champion(version)
    registry.end_run(run_id, "FINISHED")
    return version, run_id


def serving_check(registry: Registry, version: int, parent: int) -> None:
    """Load `version` from the registry exactly as a replica will (download, hash check,
    safetensors) and run the replicas' own candidate validation against the parent
    (shape and classes match, weights finite, a smoke prediction finite). A version
    that would be refused never becomes champion: the replicas would keep the parent and
    the nightly would wait for a swap that cannot happen."""
    from serving.predictor import RejectedModel, Served, validate_candidate

    candidate, card = registry.load(version)
    parent_model, parent_card = registry.load(parent)
    try:
        validate_candidate(candidate, card, Served(parent_model.eval(), str(parent), parent_card))
    except RejectedModel as e:
        registry.set_version_tag(version, "abandoned", f"refused by the serving check: {e}")
        raise RuntimeError(f"v{version} would be refused by every replica ({e}); the champion stays "
                           f"v{parent}") from None


def model_card_md(name: str, card: dict[str, Any], lineage: Lineage, evaluation: dict[str, Any]) -> str:
    """The human-readable card beside the weights (model/model.json is the machine one)."""
    new, parent = evaluation["new"], evaluation["parent"]
    def cell(v):
        return "-" if v is None else f"{v:.2f}"
    rows = "\n".join(f"| {k} | {cell(parent[k])} | {cell(new[k])} |" for k in ("UA", "RA", "TA", "MIA"))
    gates = "\n".join(f"| {g['gate']} | {g['value']:.2f} | {g['limit']:.2f} | {'pass' if g['passed'] else 'FAIL'} |"
                       for g in lineage.gates)
    return f"""# {name}: unlearned version (parent v{lineage.parent_version})

- Architecture: {card['arch']} {card['model_kwargs']}, input {card['input_shape']}, {card['num_classes']} classes
- Data: {lineage.dataset}, store snapshot {lineage.store_snapshot} (before this batch's purge)
- Method: {lineage.method} (config hash {lineage.config_hash}), batch {lineage.batch_id}
- Forgets: {len(lineage.request_ids)} deletion requests, {evaluation['n_forget']} samples; it excludes
  {len(lineage.excluded_requests)} requests in all, counting its ancestors
- Weights: `model/artifacts/checkpoint/model.safetensors` (safetensors; SHA-256 in the version tag
  `weights_sha256`); `model/` is an MLflow pyfunc model (`mlflow.pyfunc.load_model("models:/{name}@champion")`)

| metric | parent | this version |
|---|---|---|
{rows}

UA = 100 - accuracy on the forgotten samples; RA on the retained ones; TA on test;
MIA = MIA-Efficacy on the forgotten samples: the share an SVC, trained on retain (members)
vs test (non-members) confidences, calls non-members.

| gate | value | limit | |
|---|---|---|---|
{gates}
"""
