"""Serving benchmark on loopback: zero-downtime hot swap, Serve overhead, a killed replica.

    .venv/bin/python benchmarks/scripts/serve_bench.py --out benchmarks/serving

Sets up a digits deployment in a temporary $UNLEARN_HOME (`unlearn init` on Ray), serves
it with 2 replicas on 127.0.0.1, then, in one run:
1. swap: an open-loop load generator sends --rate requests/s for --seconds while the
   champion alias moves twice (to new versions registered during the load); counts
   failures, measures how long until every replica serves each new version, and p50/p99
   latency before, during (alias move -> all replicas + 1 s) and after;
2. overhead: closed-loop requests/s through Serve vs the plain Predictor in this process,
   same instances per call, side by side;
3. kill: one replica is killed with ray.kill under load; what the clients saw.
Writes OUT/serve_bench.json and OUT/serve_bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, dict | None]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return 0, None  # connection refused / reset / timeout: a failed request


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def open_loop(url: str, body: bytes, rate: float, seconds: float, events: list, pool: ThreadPoolExecutor):
    """Send at a steady rate regardless of latency; record (t_send, latency, status, version)."""
    records, futures, start = [], [], time.monotonic()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        while (d := due - time.monotonic()) > 0:
            time.sleep(min(d, 0.01))
        for t_at, fn in list(events):
            if time.monotonic() - start >= t_at:
                events.remove((t_at, fn))
                threading.Thread(target=fn, daemon=True).start()

        def one(t0=time.monotonic()):
            status, out = post(url + "/predict", body)
            return t0 - start, time.monotonic() - t0, status, (out or {}).get("model_version")

        futures.append(pool.submit(one))
    records = [f.result() for f in futures]
    return records


def pct(xs, q):
    return float(np.percentile(xs, q) * 1000) if len(xs) else float("nan")


def new_version(registry, base_version: int, noise: float, tag: str) -> int:
    model, card = registry.load(base_version)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    run = registry.start_run(tag, {"batch_id": tag})
    lineage = registry.lineage(base_version).model_copy(
        update={"batch_id": tag, "parent_version": base_version, "summary": f"{tag}: v{base_version} plus noise"})
    v = registry.register(run, model, card, lineage)
    registry.end_run(run)
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/serving")
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from jobs.init import run_init
    from jobs.serve import start_app
    from pipeline.ops.home import Home
    from pipeline.ops.registry import Registry
    from pipeline.ray.train import RayOptions
    from serving.predictor import Predictor

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    home = Home(Path(tempfile.mkdtemp(prefix="serve-bench-")))
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    run_init(home, "digits", RayOptions(), ROOT / "pipeline/configs/digits.yaml", log=lambda *a: None)
    registry = Registry(home.tracking_uri, home.state()["model_name"], home.artifacts)
    url = start_app(home, "127.0.0.1", args.port, args.replicas, poll_s=1.0, max_batch_size=32)
    from pipeline.datasets.store import read_store

    _, test = read_store(home.root / "datasets" / "digits")
    one = json.dumps({"instances": test.features[:1].tolist()}).encode()
    results: dict = {"rate": args.rate, "seconds": args.seconds, "replicas": args.replicas}
    pool = ThreadPoolExecutor(64)

    # 1. zero-downtime swap, twice
    swaps: list[dict] = []

    def move(noise_tag: str):
        def fn():
            v = new_version(registry, registry.champion(), 1e-3, noise_tag)
            t0 = time.monotonic()
            registry.set_champion(v)
            moved_at = t0 - t_start
            while True:
                m = get(url + "/model")
                if m["all_replicas"] and m["version"] == str(v) and len(m["replicas"]) == args.replicas:
                    break
                time.sleep(0.05)
            swaps.append({"version": v, "alias_moved_s": moved_at, "all_replicas_after_s": time.monotonic() - t0})
        return fn

    events = [(args.seconds * 0.3, move("bench-swap-1")), (args.seconds * 0.65, move("bench-swap-2"))]
    for _ in range(20):  # warm up
        post(url + "/predict", one)
    t_start = time.monotonic()
    records = open_loop(url, one, args.rate, args.seconds, events, pool)
    lat = np.array([r[1] for r in records])
    t_send = np.array([r[0] for r in records])
    failed = sum(1 for r in records if r[2] != 200)
    during = np.zeros(len(records), bool)
    for s in swaps:
        during |= (t_send >= s["alias_moved_s"]) & (t_send <= s["alias_moved_s"] + s["all_replicas_after_s"] + 1.0)
    first = min(s["alias_moved_s"] for s in swaps) if swaps else args.seconds
    last = max(s["alias_moved_s"] + s["all_replicas_after_s"] + 1.0 for s in swaps) if swaps else args.seconds
    results["swap"] = {
        "requests": len(records), "failed": failed, "swaps": swaps,
        "versions_seen": sorted({r[3] for r in records if r[3]}),
        "p50_ms": {"before": pct(lat[t_send < first], 50), "during": pct(lat[during], 50),
                   "after": pct(lat[t_send > last], 50)},
        "p99_ms": {"before": pct(lat[t_send < first], 99), "during": pct(lat[during], 99),
                   "after": pct(lat[t_send > last], 99)},
        "max_ms": float(lat.max() * 1000),
    }
    print(json.dumps(results["swap"], indent=1))

    # 2. overhead: closed loop through Serve vs the plain predictor in-process
    champion = registry.champion()
    model, card = registry.load(champion)
    predictor = Predictor()
    predictor.swap(model, card, str(champion))
    torch.set_num_threads(1)
    overhead = {}
    for n_inst in (1, 32):
        body = json.dumps({"instances": test.features[:n_inst].tolist()}).encode()
        inst = test.features[:n_inst].tolist()
        t0, k = time.monotonic(), 0
        while time.monotonic() - t0 < 5:
            predictor.predict(inst)
            k += 1
        local = k / (time.monotonic() - t0)
        stop = time.monotonic() + 5
        counts = []

        def client():
            c = 0
            while time.monotonic() < stop:
                c += post(url + "/predict", body)[0] == 200
            counts.append(c)

        threads = [threading.Thread(target=client) for _ in range(16)]
        t0 = time.monotonic()
        [t.start() for t in threads]
        [t.join() for t in threads]
        served = sum(counts) / (time.monotonic() - t0)
        overhead[f"{n_inst}_instances"] = {"serve_rps": served, "in_process_calls_per_s": local,
                                           "ratio": served / local}
    results["overhead"] = overhead
    print(json.dumps(overhead, indent=1))

    # 3. a replica killed under load
    def replica_names():  # the named-actor list needs no dashboard
        return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith("SERVE_REPLICA") and "#model#" in a["name"])

    victim = replica_names()[0]

    replaced: dict = {}

    def kill():
        t0 = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        while time.monotonic() - t0 < 60:  # Serve's controller notices and starts a new replica
            alive = replica_names()
            if victim not in alive and len(alive) == args.replicas:
                replaced["s"] = time.monotonic() - t0
                return
            time.sleep(0.2)

    kill_at = 5.0
    t_start = time.monotonic()
    records = open_loop(url, one, args.rate, 25.0, [(kill_at, kill)], pool)
    lat = np.array([r[1] for r in records])
    codes: dict[str, int] = {}
    for r in records:
        codes[str(r[2])] = codes.get(str(r[2]), 0) + 1
    results["kill"] = {"requests": len(records), "status_codes": codes, "p50_ms": pct(lat, 50),
                       "p99_ms": pct(lat, 99), "max_ms": float(lat.max() * 1000),
                       "replacement_running_after_s": replaced.get("s")}
    print(json.dumps(results["kill"], indent=1))
    (out / "serve_bench.json").write_text(json.dumps(results, indent=2))
    sw, ov, kl = results["swap"], results["overhead"], results["kill"]
    md = [f"# Serving benchmark ({args.replicas} replicas, digits CNN, loopback, 2-core machine)", "",
          f"Swap: {sw['requests']} requests at {args.rate:g}/s, champion moved twice; failed: {sw['failed']}; "
          f"versions seen: {', '.join(sw['versions_seen'])}.", "",
          "| | before | during | after |", "|---|---|---|---|",
          "| p50 ms | " + " | ".join(f"{sw['p50_ms'][k]:.1f}" for k in ("before", "during", "after")) + " |",
          "| p99 ms | " + " | ".join(f"{sw['p99_ms'][k]:.1f}" for k in ("before", "during", "after")) + " |", "",
          "Every replica on the new version, seconds after the alias moved: "
          + ", ".join(f"v{s['version']}: {s['all_replicas_after_s']:.2f}" for s in sw["swaps"]), "",
          "Overhead (16 closed-loop clients vs the plain Predictor in-process, 1 thread):", "",
          "| instances per call | Serve req/s | in-process calls/s | ratio |", "|---|---|---|---|"]
    for k, v in ov.items():
        md.append(f"| {k.split('_')[0]} | {v['serve_rps']:.0f} | {v['in_process_calls_per_s']:.0f} | {v['ratio']:.3f} |")
    md += ["", f"Killed replica under {args.rate:g} req/s: status codes {kl['status_codes']}, p50 {kl['p50_ms']:.1f} ms, "
           f"p99 {kl['p99_ms']:.1f} ms, max {kl['max_ms']:.0f} ms; a new replica was running "
           f"{kl['replacement_running_after_s']:.1f} s after the kill."]
    (out / "serve_bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
