"""Every user mistake we know of, through `jobs.cli.main` in this process: exit code 2, one
line on stderr, no traceback, and nothing written (no output directory, no deployment).
tests/e2e/test_cli.py runs a few of them as real subprocesses."""

import pytest


@pytest.mark.parametrize(
    "args,match",
    [
        (["bench", "--dataset", "nope", "--out", "o"], "unknown dataset"),
        (["bench", "--dataset", "digits", "--forget", "class:42", "--out", "o"], "no such class"),
        (["bench", "--dataset", "digits", "--methods", "lur,magic", "--out", "o"], "unknown methods"),
        (["bench", "--dataset", "digits", "--seeds", "a,b", "--out", "o"], "integers"),
        (["bench", "--dataset", "parquet:/does/not/exist", "--out", "o"], "not found"),
        (["tune", "--dataset", "digits", "--holdout", "0", "--out", "o"], "holdout"),
        (["report", "nowhere"], "results.json not found"),
        (["forget", "--dataset", "digits", "--out", "o"], "one of the arguments --samples --subjects --forget is required"),
        (["nope"], "invalid choice"),
        (["bench", "--dataset", "digits", "--out", "o", "--seeds"], "expected one argument"),
        (["forget", "--dataset", "digits", "--samples", "digits-train-999999", "--out", "o"], "unknown sample ids"),
        (["forget", "--dataset", "digits", "--subjects", "x", "--method", "magic", "--out", "o"], "unknown method"),
        (["forget", "--dataset", "digits", "--subjects", "x", "--workers", "0", "--out", "o"], "at least 1"),
        (["forget", "--dataset", "digits", "--subjects", "x", "--bf16", "--out", "o"], "needs --gpu"),
        (["forget", "--dataset", "digits", "--subjects", "digits-train-subj-000001", "--from", "/nope", "--out", "o"],
         "not a checkpoint"),
        (["bench", "--dataset", "digits", "--engine", "ray", "--workers", "-1", "--out", "o"], "at least 1"),
        (["bench", "--dataset", "digits", "--workers", "2", "--out", "o"], "add --engine ray"),
        (["forget", "--dataset", "digits", "--subjects", "x", "--cpus-per-worker", "0", "--out", "o"], "must be positive"),
        (["request", "add", "--subject", "alice"], "unlearn init"),
        (["request", "list"], "unlearn init"),
        (["nightly"], "unlearn init"),
        (["audit", "del-123"], "unlearn init"),
        (["rollback"], "unlearn init"),
        (["versions"], "unlearn init"),
        (["init", "--dataset", "nope"], "unknown dataset"),
        (["nightly", "--method", "retrain"], "unknown unlearning method"),
        (["forget", "--dataset", "digits", "--subjects", "digits-train-subj-000001", "--address", "127.0.0.1:1",
          "--out", "o"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        (["serve"], "unlearn init"),
        (["serve", "--port", "0"], "not a TCP port"),
        (["nightly", "--grace-days", "-1"], "grace_days must not be negative"),
        (["nightly", "--max-ra-drop", "nan"], "must be a finite number"),
        (["nightly", "--config", ""], "--config is empty"),
        (["nightly", "--method", ""], "unknown unlearning method ''"),
        (["nightly", "--workers", "500"], "on a local Ray"),
        (["init", "--dataset", "digits", "--seed", "-1"], "seeds must not be negative"),
        (["init", "--dataset", "digits", "--config", "."], "Is a directory"),
        (["bench", "--dataset", "digits", "--methods", "retrain", "--out", "o"], "the oracle"),
        (["submit", "--", "nightly", "--workrs", "2"], "unrecognized arguments: --workrs 2"),
    ],
)
def test_user_errors_are_one_line_without_traceback(run_cli, tmp_path, args, match):
    r = run_cli(*args, env={"UNLEARN_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert r.returncode == 2
    assert match in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # a mistake writes no output directory
    if args[0] not in ("bench", "tune", "forget", "report"):  # those keep a dataset cache in the home
        assert not (tmp_path / "home").exists()  # ... and a deployment command sets up nothing




def test_version_and_a_stop_with_nothing_running_succeed(run_cli, tmp_path):
    r = run_cli("--version", env={"UNLEARN_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("unlearn 0.")
    # cleanup scripts stop unconditionally: the state they ask for already holds
    r = run_cli("serve", "--stop", env={"UNLEARN_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert r.returncode == 0 and "nothing is serving" in r.stdout and not (tmp_path / "home").exists()
