"""Overhead of Ray Train over the plain loop, measured side by side in one run.

    python benchmarks/scripts/ray_overhead.py [--dataset fashion-mnist] [--method lur] [--epochs 2] [--repeats 2]

Same data (the dataset's random:0.1 forget set), same model (the shipped recipe's
original), same method config, same global batch; telemetry off. Each engine runs
`--repeats` times, interleaved, and the median is kept (this machine is shared).
Steady state = samples/s over the loop itself (the worker's own clock, so it excludes
Ray start-up, dataset reads and shard loading); start-up is reported separately as
wall time minus loop time. CPU runs give every engine one thread per worker.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from pipeline.configs import default_config_path, load_run_configs, method_config  # noqa: E402
from pipeline.datasets import (  # noqa: E402
    read_store,
    select_forget,
    store_dir,  # noqa: E402
)
from pipeline.problem import original_model  # noqa: E402
from pipeline.ray.cluster import connect  # noqa: E402
from pipeline.ray.train import RayOptions, unlearn_on_ray  # noqa: E402
from pipeline.train import to_tensors  # noqa: E402
from pipeline.unlearn import (
    UnlearnConfig,  # noqa: E402
    unlearn,  # noqa: E402
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--method", default="lur")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    ap.add_argument("--home", default=os.environ.get("UNLEARN_HOME", ".unlearn"))
    args = ap.parse_args()
    home = Path(args.home)
    torch.set_num_threads(1)  # the local loop gets what one Ray worker gets: one CPU

    configs, train_cfg = load_run_configs(default_config_path(args.dataset))
    spec = "random:0.1"
    ucfg = UnlearnConfig.from_dict({**method_config(configs, spec, args.method, 0).to_dict(),
                                    "epochs": args.epochs, "conflict_every": 0})
    model, card = original_model(args.dataset, 0, train_cfg, home)
    train, _ = read_store(store_dir(args.dataset, home))
    mask = select_forget(spec, train, 0)
    x, y = to_tensors(train)
    m = torch.from_numpy(mask)
    forget, retain, ids = (x[m], y[m]), (x[~m], y[~m]), train.sample_ids[mask].tolist()
    per_step = ucfg.forget_batch + ucfg.retain_batch
    workers = [int(w) for w in args.workers.split(",")]
    connect(None, num_cpus=max(os.cpu_count() or 1, max(workers) + 2))  # Ray Data needs a CPU beside the workers

    rows: dict[str, list[tuple[float, float]]] = {}
    for rep in range(args.repeats):
        t = time.perf_counter()
        r = unlearn(copy.deepcopy(model), forget, retain, ucfg)
        rows.setdefault("local loop", []).append((r.steps * per_step / r.seconds, time.perf_counter() - t - r.seconds))
        for n in workers:
            _, s = unlearn_on_ray(copy.deepcopy(model), card, str(store_dir(args.dataset, home)), ids, ucfg,
                                  RayOptions(workers=n, storage_path=str(home / "ray_results" / "overhead")), home)
            rows.setdefault(f"ray train, {n} worker{'s' * (n > 1)}", []).append(
                (s["steps"] * per_step / s["seconds"], s["wall_seconds"] - s["seconds"]))
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)

    base = statistics.median(v for v, _ in rows["local loop"])
    print(f"\n{args.dataset}, {args.method}, {ucfg.epochs} epochs, global batch {ucfg.forget_batch}+{ucfg.retain_batch}, "
          f"median of {args.repeats}, torch threads per worker 1\n")
    print("| engine | steady samples/s | vs local loop | start-up s |")
    print("|---|---|---|---|")
    for name, vals in rows.items():
        sps, start = statistics.median(v for v, _ in vals), statistics.median(s for _, s in vals)
        print(f"| {name} | {sps:.0f} | {sps / base:.2f} | {start:.1f} |")


if __name__ == "__main__":
    main()
