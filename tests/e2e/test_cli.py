"""The `unlearn` CLI as a user runs it: subprocesses, real data, files on disk."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.methods import METHODS


def unlearn(*args, home, timeout=300, cwd=None):
    env = {**os.environ, "UNLEARN_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


def test_help_on_every_command(tmp_path):
    top = unlearn("--help", home=tmp_path)
    assert top.returncode == 0 and "bench" in top.stdout and "tune" in top.stdout
    for cmd in ("bench", "tune", "report", "forget", "init", "nightly", "audit", "rollback", "versions",
                "request", "request add", "request list", "serve"):
        r = unlearn(*cmd.split(), "--help", home=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: unlearn {cmd}")
        assert cmd in ("report", "audit", "versions", "request") or "default:" in r.stdout


# A few user mistakes as real subprocesses (the whole list runs in-process, in
# tests/unit/test_cli_errors.py): the exit code, stderr and no traceback as a shell sees them.
@pytest.mark.parametrize("args,match", [
    (["nope"], "invalid choice"),
    (["bench", "--dataset", "nope", "--out", "o"], "unknown dataset"),
    (["request", "list"], "unlearn init"),
    (["nightly", "--max-ra-drop", "nan"], "must be a finite number"),
    (["submit", "--", "nightly", "--workrs", "2"], "unrecognized arguments: --workrs 2"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, match):
    r = unlearn(*args, home=tmp_path / "home", cwd=tmp_path)
    assert r.returncode == 2
    assert match in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "home").exists()


@pytest.mark.slow
def test_digits_bench_runs_every_method_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = unlearn("bench", "--dataset", "digits", "--forget", "class:3", "--methods", "all", "--seeds", "0,1",
                "--out", str(out), home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "digits" and res["forget"] == "class:3"
    for block in ("original", "retrain"):
        assert {"UA", "RA", "TA", "MIA", "std", "per_seed"} <= set(res[block])
    assert res["retrain"]["seconds"] > 0
    # The oracle forgets a whole class by construction: nothing of class 3 is left.
    assert res["retrain"]["UA"] == 100.0
    assert res["original"]["UA"] < 5.0
    assert set(res["methods"]) == set(METHODS) - {"retrain"}
    for name, m in res["methods"].items():
        assert {"UA", "RA", "TA", "MIA", "gap", "seconds", "time_ratio", "conflict", "std", "per_seed"} <= set(m), name
        assert len(m["per_seed"]) == 2 and 0 <= m["gap"] <= 100
    assert res["methods"]["lur"]["UA"] > res["original"]["UA"]  # LUR moved toward forgetting
    assert "| lur |" in (out / "report.md").read_text()
    assert res["original"]["gap"] > 10  # the original still knows class 3: far from the oracle
    for plot in ("metrics.png", "conflict.png"):
        assert (out / plot).stat().st_size > 10_000
    (out / "report.md").unlink()
    assert unlearn("report", str(out), home=tmp_path / "home").returncode == 0
    assert "| lur |" in (out / "report.md").read_text()
    # A second run reuses the cached original and retrain models (same config hash).
    models = sorted(p.name for p in (tmp_path / "home" / "models").iterdir() if not p.name.startswith("."))
    assert len(models) == 4  # 2 seeds x (original, retrain)


def test_tune_on_a_validation_split_picks_the_lowest_gap(tmp_path):
    out = tmp_path / "tune"
    r = unlearn("tune", "--dataset", "digits", "--forget", "random:0.1", "--methods", "lur,finetune",
                "--holdout", "300", "--out", str(out), home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "tune.json").read_text())
    assert res["holdout"] == 300
    for name in ("lur", "finetune"):
        trials = res["methods"][name]["trials"]
        assert len(trials) == 2  # the shipped digits grid has two points per method
        assert res["methods"][name]["best"]["gap"] == min(t["gap"] for t in trials)


@pytest.mark.slow
def test_forget_on_two_ray_workers_writes_a_checkpoint_with_lineage(tmp_path):
    """`unlearn forget` as a user runs it: a local Ray, 2 workers, one person's samples."""
    from pipeline.models import load_checkpoint

    out = tmp_path / "forgot"
    r = unlearn("forget", "--dataset", "digits", "--subjects", "digits-train-subj-000001,digits-train-subj-000002",
                "--method", "lur", "--workers", "2", "--out", str(out), home=tmp_path / "home", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    model, card = load_checkpoint(out / "model")
    lineage = card["lineage"]
    assert lineage["method"] == "lur" and lineage["forget_count"] == 6 and lineage["parent"]["original"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"UA", "RA", "TA", "MIA", "seconds", "wall_seconds", "conflict"} <= set(metrics)
    assert metrics["workers"] == 2 and metrics["plan"]["replicate_forget"]  # 6 samples: replicated, not split
    assert metrics["weight_divergence"] == 0.0
    assert metrics["RA"] > 90  # forgetting 6 samples keeps the rest
    # (Starting from a written checkpoint, `--from`: tests/integration, on the shared Ray.)
