"""`unlearn init`: set up a deployment in $UNLEARN_HOME.

    unlearn init --dataset digits --workers 2

Ingests the dataset into the Parquet store, trains the original model on Ray Train (the
same TorchTrainer glue as unlearning, `pipeline.ray.train.train_on_ray`), registers it
in MLflow as version 1 and points the `champion` alias at it. Re-running after a crash
finishes the job; re-running after success says so and changes nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.configs import load_run_configs
from pipeline.datasets import open_store, store_dir
from pipeline.datasets.store import snapshot_id
from pipeline.errors import UserError
from pipeline.metrics import accuracy, predict_logits
from pipeline.models import build_model, config_hash
from pipeline.ops.home import Home, registered_model_name
from pipeline.ops.ledger import Ledger
from pipeline.ops.lineage import Lineage
from pipeline.ops.registry import Registry
from pipeline.problem import model_card
from pipeline.train import to_tensors

INIT_BATCH = "init"  # the batch id of version 1, the original model


def run_init(home: Home, dataset: str, ray_opts, config_path: Path, seed: int = 0, log=print) -> dict[str, Any]:
    if (home.root / "home.json").exists():
        state = home.state()
        raise UserError(f"{home.root} is already set up for {state['dataset']} (model {state['model_name']}); "
                        f"use another UNLEARN_HOME for a new deployment")
    from pipeline.ray.cluster import check_reachable

    check_reachable(ray_opts.address)  # an unreachable cluster fails before anything is written
    configs, train_cfg = load_run_configs(config_path)
    train_cfg = type(train_cfg).from_dict({**train_cfg.to_dict(), "seed": seed})
    name = registered_model_name(dataset)
    fresh = not home.root.exists()
    try:
        train, test = open_store(dataset, home.root)  # an unknown dataset fails before anything is created
        num_classes = int(max(train.labels.max(), test.labels.max())) + 1
        card = model_card(dataset, train, num_classes, train_cfg)
        build_model(card["arch"], tuple(card["input_shape"]), num_classes, **card["model_kwargs"])  # bad kwargs fail here
        Ledger(home.ledger_url)  # creates the tables; a bad URL fails here, before any training
        registry = Registry(home.tracking_uri, name, home.artifacts)
    except UserError:
        if fresh:  # a mistake leaves no half-made home behind (the ingested store went in first)
            shutil.rmtree(home.root, ignore_errors=True)
        raise
    store = str(store_dir(dataset, home.root))
    state = {"dataset": dataset, "model_name": name, "config": str(Path(config_path).resolve()),
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    version = registry.champion() or registry.find_batch(INIT_BATCH)
    if version is not None:  # a crash after registering: finish, do not train twice
        log(f"{name} v{version} is already registered; finishing the set-up")
        registry.set_champion(version)
        home.write_state(state)
        return {"version": version, "resumed": True}

    from pipeline.ray.train import train_on_ray

    log(f"training the original {train_cfg.arch} on {len(train)} samples, {train_cfg.epochs} epochs, "
        f"{ray_opts.workers} Ray worker(s)")
    if ray_opts.storage_path is None:  # in-flight checkpoints where housekeeping clears them
        ray_opts = dataclasses.replace(ray_opts, storage_path=str(home.train_runs))
    model, summary = train_on_ray(card, store, [], train_cfg, ray_opts, home.root, rows=len(train))
    x, y = to_tensors(train)
    tx, ty = to_tensors(test)
    metrics = {"RA": accuracy(predict_logits(model, x), y), "TA": accuracy(predict_logits(model, tx), ty)}
    log(f"original model: train accuracy {metrics['RA']:.2f}, test accuracy {metrics['TA']:.2f} "
        f"({summary['seconds']:.1f}s training)")

    run_id = registry.start_run(INIT_BATCH, {"batch_id": INIT_BATCH, "outcome": "registered"})
    registry.log(run_id, {"dataset": dataset, "workers": summary["workers"], "rows": summary["rows"],
                          **{f"train.{k}": v for k, v in train_cfg.to_dict().items()}},
                 {**metrics, "train_seconds": summary["seconds"], "wall_seconds": summary["wall_seconds"]})
    lineage = Lineage(summary=f"original model trained on {len(train)} samples of {dataset}", batch_id=INIT_BATCH,
                      parent_version=None, method="train", config=train_cfg.to_dict(), config_hash=config_hash(card),
                      dataset=dataset, store_snapshot=snapshot_id(train.sample_ids), request_ids=[],
                      excluded_requests=[], metrics=metrics, rounds_since_retrain=0, forgotten_since_retrain=0,
                      exact_train_rows=len(train))
    version = registry.register(run_id, model, card, lineage)
    registry.set_champion(version)
    registry.end_run(run_id)
    # The run's checkpoints are copies of v1: the registry is their one home (v1's weights
    # are deleted after a purge's grace period; a copy here would outlive them).
    shutil.rmtree(Path(summary["storage_path"]) / summary["run_name"], ignore_errors=True)
    home.write_state(state)
    log(f"registered {name} v{version} as champion; MLflow: {home.tracking_uri}")
    return {"version": version, "metrics": metrics, "resumed": False}
