"""The benchmark: every method against the retrain oracle, per seed, mean +- std.

    unlearn bench --dataset fashion-mnist --forget random:0.1 --methods lur,finetune --seeds 0,1,2 --out out/fm-random

Writes DIR/results.json, DIR/report.md (a table) and plots. results.json:
`{"dataset", "forget", "seeds", "original": {UA, RA, TA, MIA, gap}, "retrain": {UA, RA, TA, MIA,
seconds, sample_grads}, "methods": {NAME: {UA, RA, TA, MIA, gap, seconds, time_ratio,
grad_ratio, conflict, config, ...}}, ...}`; with several seeds each block holds the means
plus "std" and "per_seed". Plots:
DIR/metrics.png (each metric per method against retrain) and DIR/conflict.png
(gradient-conflict curves). Original and retrain models are cached in
$UNLEARN_HOME/models by config hash, so a second run only re-runs the methods.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts import write_json
from pipeline.configs import default_config_path, load_run_configs, method_config
from pipeline.errors import UserError
from pipeline.methods import METHODS, ORACLE
from pipeline.metrics import METRIC_KEYS, avg_gap
from pipeline.problem import make_problem, run_method

SCALARS = (*METRIC_KEYS, "gap", "seconds", "time_ratio", "grad_ratio", "sample_grads", "conflict_share", "conflict_mean_cos")


def aggregate(per_seed: list[dict[str, Any]], keys) -> dict[str, Any]:
    """Mean over seeds; with several seeds also std and the per-seed values."""
    keys = [k for k in keys if all(k in r and r[k] is not None for r in per_seed)]
    mean = {k: float(np.mean([r[k] for r in per_seed])) for k in keys}
    if len(per_seed) > 1:
        mean["std"] = {k: float(np.std([r[k] for r in per_seed], ddof=1)) for k in keys}
        mean["per_seed"] = [{k: r[k] for k in keys} for r in per_seed]
    return mean


def run_bench(
    dataset: str,
    forget_spec: str,
    methods: list[str],
    seeds: list[int],
    out: Path,
    home: Path,
    config_path: Path | None = None,
    log=print,
    device: str = "cpu",
    ray_opts=None,
) -> dict[str, Any]:
    configs, train_cfg = load_run_configs(config_path or default_config_path(dataset))
    methods = [m for m in methods if m != ORACLE]  # the oracle always runs
    ucfgs = {m: method_config(configs, forget_spec, m, 0) for m in methods}  # validate all before any work
    from pipeline.datasets import open_store, select_forget

    train, _ = open_store(dataset, home)  # an unknown dataset or a bad forget spec fails before
    select_forget(forget_spec, train, seeds[0])  # anything is written to --out
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    originals, retrains, runs = [], [], {m: [] for m in methods}
    curves: dict[str, list] = {m: [] for m in methods}
    start = time.perf_counter()
    # Seconds only compare within one run on one device: say which.
    meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "engine": "ray" if ray_opts else "local", "workers": ray_opts.workers if ray_opts else 1}
    for seed in seeds:
        problem = make_problem(dataset, forget_spec, seed, train_cfg, home, log=log, device=device)
        engine = None
        if ray_opts is not None:
            from pipeline.ray.train import problem_engine

            engine = problem_engine(problem, ray_opts, home)
        originals.append({**problem.original_metrics, "gap": avg_gap(problem.original_metrics, problem.retrain_metrics)})
        retrains.append({**problem.retrain_metrics, "seed": seed, "seconds": problem.retrain_cost["seconds"],
                         "sample_grads": problem.retrain_cost["sample_grads"]})
        log(f"[seed {seed}] original {fmt(problem.original_metrics)} | retrain {fmt(problem.retrain_metrics)} "
            f"in {problem.retrain_cost['seconds']:.0f}s")
        for m in methods:
            ucfg = method_config(configs, forget_spec, m, seed)
            r = run_method(problem, ucfg, engine)
            runs[m].append(r)
            curves[m].append(r["conflict"])
            log(f"[seed {seed}] {m:13s} {fmt(r)} gap {r['gap']:.2f}  {r['seconds']:.1f}s "
                f"({100 * r['time_ratio']:.1f}% of retrain)  conflict share {r['conflict_share']}")
            # Results are rewritten after every method: a run stopped midway keeps what it measured.
            write_results(out, dataset, forget_spec, train_cfg, originals, retrains, runs, curves, ucfgs, start, meta)
    return write_results(out, dataset, forget_spec, train_cfg, originals, retrains, runs, curves, ucfgs, start, meta,
                         final=True)


def write_results(out, dataset, forget_spec, train_cfg, originals, retrains, runs, curves, ucfgs, start, meta,
                  final=False):
    done = {m: r for m, r in runs.items() if r}  # partial runs: each method over the seeds it finished
    results = {
        "dataset": dataset,
        "forget": forget_spec,
        "seeds": [r["seed"] for r in retrains],
        "complete": final,
        "train_config": train_cfg.to_dict(),
        "original": aggregate(originals, (*METRIC_KEYS, "gap")),
        "retrain": aggregate(retrains, (*METRIC_KEYS, "seconds", "sample_grads")),
        "methods": {m: {**aggregate(r, SCALARS), "n_seeds": len(r), "conflict": curves[m], "config": ucfgs[m].to_dict()}
                    for m, r in done.items()},
        "wall_seconds": time.perf_counter() - start,
        **meta,
    }
    write_json(out / "results.json", results)
    (out / "report.md").write_text(report(results))
    if final:
        plot(results, out)
        print(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'metrics.png'}, {out / 'conflict.png'}")
    return results


def fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k} {m[k]:5.1f}" for k in METRIC_KEYS)


def _pm(block: dict, key: str, digits: int = 2) -> str:
    v = block.get(key)
    if v is None:
        return "-"
    s = f"{v:.{digits}f}"
    if "std" in block and key in block["std"]:
        s += f" ± {block['std'][key]:.{digits}f}"
    return s


def report(results: dict[str, Any]) -> str:
    seeds = results["seeds"]
    lines = [
        f"# {results['dataset']}, forget {results['forget']}, seeds {','.join(map(str, seeds))}",
        "",
        "Mean ± std over seeds. Gap = mean |method − retrain| over UA, RA, TA, MIA (lower is better).",
        "Time % = method wall seconds / retrain wall seconds, measured in the same run.",
        "",
        "| method | UA | RA | TA | MIA | Avg.Gap | seconds | time % | conflict share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    o, r = results["original"], results["retrain"]
    lines.append("| original (no unlearning) | " + " | ".join(_pm(o, k) for k in METRIC_KEYS) + f" | {_pm(o, 'gap')} | - | - | - |")
    lines.append("| retrain (oracle) | " + " | ".join(_pm(r, k) for k in METRIC_KEYS) + f" | 0 | {_pm(r, 'seconds', 1)} | 100 | - |")
    best = min(results["methods"], key=lambda m: results["methods"][m]["gap"], default=None)
    for m, b in results["methods"].items():
        gap = _pm(b, "gap")
        lines.append(f"| {m} | " + " | ".join(_pm(b, k) for k in METRIC_KEYS)
                     + f" | {'**' + gap + '**' if m == best else gap} | {_pm(b, 'seconds', 1)} | "
                     f"{100 * b['time_ratio']:.1f} | {_pm(b, 'conflict_share')} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    # Signed distance to the oracle, per metric: 0 is perfect. symlog keeps the small
    # gaps that matter readable next to a method that collapsed.
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), sharey=True)
    for ax, key in zip(axes, METRIC_KEYS):
        vals = [results["methods"][m][key] - results["retrain"][key] for m in methods]
        errs = [results["methods"][m].get("std", {}).get(key, 0.0) for m in methods]
        ax.bar(methods, vals, yerr=errs, color=["tab:blue" if m == "lur" else "tab:gray" for m in methods])
        ax.axhline(0, color="tab:red", ls="--", lw=1)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"{key} − retrain (retrain = {results['retrain'][key]:.1f})")
        ax.tick_params(axis="x", rotation=60)
    axes[0].set_ylabel("method − retrain (points)")
    fig.suptitle(f"{results['dataset']} · forget {results['forget']} · distance to the retrain oracle per metric")
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)

    # Conflict: per-step cos averaged over seeds (the steps are the same for every seed),
    # and the share of sampled steps with cos < 0 per method.
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for m in methods:
        curves = [c for c in results["methods"][m]["conflict"] if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [s for s, _ in curves[0][:n]]
        cos = np.mean([[v for _, v in c[:n]] for c in curves], axis=0)
        highlight = m in ("lur", "neggrad_plus")
        ax.plot(steps, cos, label=m, lw=2.4 if highlight else 1.0, alpha=1.0 if highlight else 0.55)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("cos(∇L_u, ∇L_r), mean over seeds")
    ax.set_title("Gradient conflict during unlearning (below 0: forget and retain fight)")
    ax.legend(fontsize=8, ncol=2)
    shares = [results["methods"][m].get("conflict_share") or 0.0 for m in methods]
    errs = [results["methods"][m].get("std", {}).get("conflict_share", 0.0) for m in methods]
    bx.bar(methods, shares, yerr=errs, color=["tab:blue" if m == "lur" else "tab:gray" for m in methods])
    bx.set_ylim(0, 1.05)
    bx.set_title("share of sampled steps with cos < 0")
    bx.tick_params(axis="x", rotation=60)
    fig.suptitle(f"{results['dataset']} · forget {results['forget']}")
    fig.tight_layout()
    fig.savefig(out / "conflict.png", dpi=110)
    plt.close(fig)


def render(out: Path) -> dict[str, Any]:
    """Re-write report.md and the plots from an existing results.json."""
    path = Path(out) / "results.json"
    if not path.exists():
        raise UserError(f"{path} not found: run `unlearn bench ... --out {out}` first")
    results = json.loads(path.read_text())
    (Path(out) / "report.md").write_text(report(results))
    plot(results, Path(out))
    return results


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if text.strip() == "all":
        names = [m for m in METHODS if m != ORACLE]
    return names
