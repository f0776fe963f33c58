"""Tuning: a small grid per method on a validation split, never on the test set.

    unlearn tune --dataset fashion-mnist --forget random:0.1 --holdout 3000 --subsample 20000 --out out/tune-random

`--holdout N` sets N train samples aside as the validation split; it takes the test
set's place in TA and in the MIA's non-members. `--subsample` shrinks the train set so
that the same budget covers every method (the winners transfer as epochs over the
forget set and learning rates). Every method gets the same number of grid points, so
LUR gets no more tuning than any baseline. The grid lives in
pipeline/configs/<dataset>-grid.yaml; winners are printed and written to DIR/tune.json
beside DIR/config.yaml: the base config with each tuned method's winner in place,
ready for `unlearn bench --config DIR/config.yaml`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_json
from pipeline.configs import load_method_configs, load_run_configs, method_config, scenario_of
from pipeline.errors import UserError
from pipeline.problem import make_problem, run_method
from pipeline.unlearn import UnlearnConfig


def grid_points(base: UnlearnConfig, grid: dict[str, list]) -> list[UnlearnConfig]:
    """Cartesian product of the grid over a base config; `method_kwargs.x` keys reach into the method."""
    keys = list(grid)
    empty = [k for k in keys if not isinstance(grid[k], list) or not grid[k]]
    if empty:
        raise UserError(f"grid keys {empty} need a non-empty list of values")
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        data = base.to_dict()
        data["method_kwargs"] = dict(data["method_kwargs"])
        for k, v in zip(keys, values):
            if k.startswith("method_kwargs."):
                data["method_kwargs"][k.split(".", 1)[1]] = v
            else:
                data[k] = v
        points.append(UnlearnConfig.from_dict(data, f"grid point {dict(zip(keys, values))}"))
    return points


def run_tune(dataset: str, forget_spec: str, methods: list[str], out: Path, home: Path, config_path: Path,
             grid_path: Path, holdout: int, subsample: int, seed: int = 0, log=print, device: str = "cpu") -> dict[str, Any]:
    if holdout <= 0:
        raise UserError("tuning needs --holdout N > 0: a validation split carved from train, never the test set")
    configs, train_cfg = load_run_configs(config_path)
    grids = load_method_configs(grid_path).get(scenario_of(forget_spec), {})
    plan = {m: grid_points(method_config(configs, forget_spec, m, seed), grids.get(m, {})) for m in methods}
    problem = make_problem(dataset, forget_spec, seed, train_cfg, home, holdout=holdout, subsample=subsample, log=log,
                           device=device)
    Path(out).mkdir(parents=True, exist_ok=True)  # after the plan and the problem: a mistake leaves no empty --out
    log(f"validation problem: retrain {problem.retrain_metrics}")
    results: dict[str, Any] = {"dataset": dataset, "forget": forget_spec, "holdout": holdout, "subsample": subsample,
                               "retrain": problem.retrain_metrics, "methods": {}}
    for m, points in plan.items():
        trials = []
        for ucfg in points:
            r = run_method(problem, ucfg)
            r.pop("conflict")
            trials.append({"config": ucfg.to_dict(), **r})
            log(f"{m:13s} gap {r['gap']:6.2f}  UA {r['UA']:5.1f} RA {r['RA']:5.1f} TA {r['TA']:5.1f} MIA {r['MIA']:5.1f} "
                f"{r['seconds']:5.1f}s  {ucfg.to_dict()}")
        best = min(trials, key=lambda t: t["gap"])
        results["methods"][m] = {"best": best, "trials": trials}
        log(f"==> {m}: best gap {best['gap']:.2f} with {best['config']}")
        write_json(Path(out) / "tune.json", results)
        write_tuned_config(Path(out) / "config.yaml", configs, forget_spec, results)
    return results


def write_tuned_config(path: Path, configs: dict[str, Any], forget_spec: str, *tunes: dict[str, Any]) -> None:
    """The base config with the scenario's tuned methods replaced by their winners.

    Several tune results (e.g. one process per method) merge into one file; each winner
    keeps a `_tuned` note of its validation gap, the grid size and the validation split.
    """
    import yaml

    configs = {k: v for k, v in configs.items() if not k.startswith("_") and k != "loop"}
    section = dict(configs.get(scenario_of(forget_spec), {}))
    for tune in tunes:
        for m, block in tune["methods"].items():
            best = {k: v for k, v in block["best"]["config"].items() if k not in ("method", "seed")}
            note = (f"val gap {block['best']['gap']:.2f}, best of {len(block['trials'])}, "
                    f"holdout {tune['holdout']}, subsample {tune['subsample'] or 'none'}")
            section[m] = {**best, "_tuned": note}
    configs[scenario_of(forget_spec)] = section
    path.write_text(yaml.safe_dump(configs, sort_keys=False, width=120))
