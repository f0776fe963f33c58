"""An unlearning problem: data split into forget/retain/test, the original model and the
retrain oracle, both cached on disk by config hash so repeated runs reuse them.

Used by the benchmark and by tuning. Tuning passes `holdout`: that many train samples
are set aside as the validation split and take the test set's place, so no
hyper-parameter is ever chosen by looking at the test set.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pipeline.config import TrainConfig
from pipeline.datasets import Split, open_store, select_forget, store_dir
from pipeline.errors import UserError
from pipeline.methods import build_method
from pipeline.metrics import avg_gap, evaluate
from pipeline.models import build_model, config_hash, load_checkpoint, save_checkpoint
from pipeline.train import fit, to_tensors
from pipeline.unlearn import UnlearnConfig, unlearn

HOLDOUT_SEED = 20251  # fixed, so every seed tunes against the same validation split


@dataclass
class Problem:
    dataset: str
    forget_spec: str
    seed: int
    train_cfg: TrainConfig
    forget: tuple[torch.Tensor, torch.Tensor]
    retain: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    original: nn.Module
    original_metrics: dict[str, float]
    original_cost: dict[str, Any]
    retrain_metrics: dict[str, float]
    retrain_cost: dict[str, Any]
    num_classes: int
    card: dict[str, Any]  # the original model's card
    forget_ids: list[str]
    store: str | None  # the Parquet store the split came from (None for holdout/subsample problems)

    def fresh_original(self) -> nn.Module:
        return copy.deepcopy(self.original)


def _cached_fit(cache: Path, card: dict, x, y, cfg: TrainConfig, desc: str) -> tuple[nn.Module, dict]:
    """Train once per config hash (on the data's device); later runs load the safetensors checkpoint."""
    key = config_hash(card)
    directory = cache / f"{desc}-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    # The device is not in the card: the same recipe gives the same cache entry anywhere.
    # Benchmarks of two forget specs share the original: an exclusive lock per key
    # makes a second process wait and then load instead of training it twice.
    with open(cache / f".{desc}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "model.json").exists():
            model, saved = load_checkpoint(directory)
            return model.to(x.device).eval(), saved["cost"]
        torch.manual_seed(cfg.seed)
        model = build_model(card["arch"], tuple(card["input_shape"]), card["num_classes"], **card["model_kwargs"]).to(x.device)
        cost = fit(model, x, y, cfg, desc=desc)
        # Write beside, then rename: a crash never leaves a half checkpoint in the cache.
        tmp = cache / f".tmp-{desc}-{key}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(tmp, model, {**card, "config_hash": key, "cost": cost})
        os.replace(tmp, directory)
        return model.eval(), cost


def fingerprint(split: Split) -> str:
    h = hashlib.sha256()
    h.update("\0".join(split.sample_ids.tolist()).encode())
    h.update(np.ascontiguousarray(split.labels).tobytes())
    h.update(np.ascontiguousarray(split.features).tobytes())
    return h.hexdigest()[:16]


def test_split_for(forget_spec: str, test: Split) -> Split:
    """Class-wise forgetting measures TA (and the MIA's non-members) on the remaining
    classes, as the field's reference code does (Unlearn-Sparse, SalUn)."""
    if forget_spec.startswith("class:"):
        return test.subset(test.labels != int(forget_spec.split(":", 1)[1]))
    return test


def model_card(dataset: str, train: Split, num_classes: int, cfg: TrainConfig, holdout: int = 0,
               subsample: int = 0) -> dict[str, Any]:
    """What the original model is, as its cache key: architecture, data and recipe."""
    card = {
        "arch": cfg.arch,
        "model_kwargs": cfg.model_kwargs,
        "input_shape": list(train.shape),
        "num_classes": num_classes,
        "dataset": dataset,
        "train_config": cfg.to_dict(),
        "holdout": holdout,
        "subsample": subsample,
    }
    if dataset.startswith("parquet:"):
        # Built-in data is fixed by its package; a user's directory can change under the
        # same name, so its content is part of the cache key.
        card["data_fingerprint"] = fingerprint(train)
    return card


def original_model(dataset: str, seed: int, train_cfg: TrainConfig, home: Path, log=print) -> tuple[nn.Module, dict]:
    """The dataset's original model under the shipped recipe (the same cache entry as
    the benchmark's for this seed), on CPU, with its card."""
    train, test = open_store(dataset, home)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "seed": seed})
    card = model_card(dataset, train, num_classes, cfg)
    log(f"original model: {cfg.arch}, {cfg.epochs} epochs on {len(train)} samples (cached after the first run)")
    x, y = to_tensors(train)
    model, _ = _cached_fit(Path(home) / "models", card, x, y, cfg, "original")
    return model, card


def make_problem(
    dataset: str,
    forget_spec: str,
    seed: int,
    train_cfg: TrainConfig,
    home: Path,
    holdout: int = 0,
    subsample: int = 0,
    log=print,
    device: torch.device | str = "cpu",
) -> Problem:
    train, test = open_store(dataset, home)
    if subsample < 0 or holdout < 0 or seed < 0:
        raise UserError("--subsample, --holdout and seeds must not be negative")
    if subsample:
        if subsample >= len(train):
            raise UserError(f"--subsample {subsample} is not smaller than the train set ({len(train)})")
        train = train.subset(np.sort(np.random.default_rng(HOLDOUT_SEED + 1).choice(len(train), subsample, replace=False)))
    if holdout:
        if not 0 < holdout < len(train) // 2:
            raise UserError(f"--holdout {holdout} must be positive and under half the train set ({len(train)})")
        idx = np.random.default_rng(HOLDOUT_SEED).permutation(len(train))
        test, train = train.subset(np.sort(idx[:holdout])), train.subset(np.sort(idx[holdout:]))
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    mask = select_forget(forget_spec, train, seed)
    test = test_split_for(forget_spec, test)
    x, y = (t.to(device) for t in to_tensors(train))
    m = torch.from_numpy(mask).to(device)
    forget, retain = (x[m], y[m]), (x[~m], y[~m])
    test_t = tuple(t.to(device) for t in to_tensors(test))

    cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "seed": seed})
    card = model_card(dataset, train, num_classes, cfg, holdout, subsample)
    cache = Path(home) / "models"
    log(f"[seed {seed}] original model: {cfg.arch}, {cfg.epochs} epochs on {len(y)} samples")
    original, original_cost = _cached_fit(cache, card, x, y, cfg, "original")
    log(f"[seed {seed}] retrain oracle on {len(retain[1])} retain samples ({forget_spec} forgets {len(forget[1])})")
    retrain_card = {**card, "forget": forget_spec, "retain_ids_hash": config_hash(train.sample_ids[~mask].tolist())}
    retrained, retrain_cost = _cached_fit(cache, retrain_card, retain[0], retain[1], cfg, "retrain")
    return Problem(
        dataset, forget_spec, seed, cfg, forget, retain, test_t,
        original, evaluate(original, forget, retain, test_t, seed=seed), original_cost,
        evaluate(retrained, forget, retain, test_t, seed=seed), retrain_cost, num_classes,
        card, train.sample_ids[mask].tolist(), None if holdout or subsample else str(store_dir(dataset, home)),
    )


# How a method runs: (model, config) -> (unlearned model, summary with "conflict").
# None is the plain loop in this process; the Ray wing supplies one that runs on Ray
# Train workers (`pipeline.ray.train.problem_engine`).
Engine = Callable[[nn.Module, UnlearnConfig], tuple[nn.Module, dict[str, Any]]]


def run_method(problem: Problem, ucfg: UnlearnConfig, engine: Engine | None = None) -> dict[str, Any]:
    """Unlearn a copy of the original with one method; metrics, gap and cost vs retrain.
    Evaluation always runs here, on the problem's device."""
    model = problem.fresh_original()
    if engine is None:
        method = build_method(ucfg.method, **ucfg.method_kwargs)
        result = unlearn(model, problem.forget, problem.retain, ucfg, method=method, desc=ucfg.method)
        summary, conflict = result.summary(), result.conflict
    else:
        build_method(ucfg.method, **ucfg.method_kwargs)  # a bad kwarg fails here, not on a worker
        model, summary = engine(model, ucfg)
        model = model.to(problem.forget[0].device).eval()
        conflict = summary.pop("conflict")
    t = time.perf_counter()
    metrics = evaluate(model, problem.forget, problem.retain, problem.test, seed=problem.seed)
    out = {**metrics, "gap": avg_gap(metrics, problem.retrain_metrics)}
    out.update(summary)
    out["time_ratio"] = summary["seconds"] / problem.retrain_cost["seconds"]
    out["grad_ratio"] = summary["sample_grads"] / problem.retrain_cost["sample_grads"]
    out["conflict"] = conflict
    out["eval_seconds"] = time.perf_counter() - t
    return out
