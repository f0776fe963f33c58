"""`unlearn forget`: one unlearning run on Ray, from a checkpoint, writing a checkpoint.

    unlearn forget --dataset fashion-mnist --subjects fm-train-subj-000007 --method lur --workers 2 --out out/forget

The starting model is `--from DIR` (safetensors + model card), else the MLflow champion
when `unlearn init` set up $UNLEARN_HOME for this dataset, else the dataset's original
model trained with the shipped recipe (cached by config hash). `unlearn forget` is an
experiment: it writes a checkpoint, and neither registers it nor touches the ledger or
the store (that is `unlearn nightly`). Writes DIR/model
(safetensors + card with lineage) and DIR/metrics.json; metrics are computed on the
driver: UA and MIA-Efficacy on the forget set, RA on retain, TA on test.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.artifacts import write_json
from pipeline.configs import load_run_configs, method_config
from pipeline.datasets import open_store, store_dir
from pipeline.errors import UserError
from pipeline.methods import ORACLE, build_method
from pipeline.metrics import evaluate
from pipeline.models import config_hash, load_checkpoint, save_checkpoint
from pipeline.problem import original_model, test_split_for
from pipeline.train import to_tensors


def forget_spec_of(samples: str | None, subjects: str | None, spec: str | None) -> str:
    given = [s for s in (samples and f"samples:{samples}", subjects and f"subjects:{subjects}", spec) if s]
    if len(given) != 1:
        raise UserError("say what to forget with exactly one of --samples IDS, --subjects IDS or --forget SPEC")
    return given[0]


def _champion_of(dataset: str, home: Path, log):
    """The deployment's champion when $UNLEARN_HOME was set up (`unlearn init`) for this dataset."""
    from pipeline.ops.home import Home

    h = Home.from_env(home)
    if not (h.root / "home.json").exists() or h.state()["dataset"] != dataset:
        return None
    registry = h.registry()
    version = registry.champion()
    if version is None:
        return None
    log(f"no --from: starting from the champion, {registry.name} v{version}")
    model, card = registry.load(version)
    return model, {k: v for k, v in card.items() if k != "lineage"}, {"model_version": version, "model": registry.name}


def run_forget(dataset: str, spec: str, method: str, out: Path, home: Path, ray_opts, config_path: Path,
               start_from: Path | None = None, seed: int = 0, log=print) -> dict[str, Any]:
    from pipeline.datasets import select_forget
    from pipeline.ray.train import unlearn_on_ray

    if method == ORACLE:
        raise UserError("retrain is the benchmark's oracle; `unlearn forget` runs an unlearning method")
    configs, train_cfg = load_run_configs(config_path)
    ucfg = method_config(configs, spec, method, seed)
    build_method(ucfg.method, **ucfg.method_kwargs)
    train, test = open_store(dataset, home)
    mask = select_forget(spec, train, seed)
    forget_ids = train.sample_ids[mask].tolist()

    if start_from is not None:
        model, card = load_checkpoint(start_from)
        if tuple(card["input_shape"]) != tuple(train.shape):
            raise UserError(f"{start_from}: the model takes inputs of shape {card['input_shape']}, "
                            f"the dataset has {list(train.shape)}")
        parent = {"checkpoint": str(start_from), "config_hash": card.get("config_hash")}
    elif (champion := _champion_of(dataset, home, log)) is not None:
        model, card, parent = champion
    else:
        log(f"no --from: starting from {dataset}'s original model (trained once, then cached)")
        model, card = original_model(dataset, seed, train_cfg, home, log=log)
        parent = {"original": True, "config_hash": config_hash(card)}
    card = {k: v for k, v in card.items() if k not in ("cost",)}

    log(f"forgetting {len(forget_ids)} samples ({spec}) with {method} on {ray_opts.workers} Ray worker(s)")
    unlearned, summary = unlearn_on_ray(model, card, str(store_dir(dataset, home)), forget_ids, ucfg, ray_opts, home)

    t = time.perf_counter()
    x, y = to_tensors(train)
    m = torch.from_numpy(mask)
    test_x, test_y = to_tensors(test_split_for(spec, test))
    metrics = evaluate(unlearned, (x[m], y[m]), (x[~m], y[~m]), (test_x, test_y), seed=seed)
    ids_hash = hashlib.sha256("\n".join(sorted(forget_ids)).encode()).hexdigest()[:16]
    lineage = {"parent": parent, "method": method, "unlearn_config": ucfg.to_dict(), "forget_spec": spec,
               "forget_count": len(forget_ids), "forget_ids_sha256": ids_hash, "dataset": dataset,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(out)
    save_checkpoint(out / "model", unlearned, {**card, "lineage": lineage})
    report = {**metrics, **{k: v for k, v in summary.items() if k != "conflict"},
              "conflict": summary["conflict"], "eval_seconds": time.perf_counter() - t, "lineage": lineage}
    write_json(out / "metrics.json", report)
    log(f"UA {metrics['UA']:.1f} RA {metrics['RA']:.1f} TA {metrics['TA']:.1f} MIA {metrics['MIA']:.1f} | "
        f"loop {summary['seconds']:.1f}s, wall {summary['wall_seconds']:.1f}s on {summary['workers']} worker(s)")
    log(f"wrote {out / 'model'} and {out / 'metrics.json'}")
    return report
