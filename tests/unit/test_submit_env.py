"""What `unlearn submit` sends with a job: never a token or a password (the Ray dashboard
shows a job's runtime_env), and a job that lacks the ledger URL it needs fails with one
line instead of opening a ledger of its own."""

import pytest

from jobs.submit import REQUIRE_ENV, job_env
from pipeline.errors import UserError
from pipeline.ops.home import Home


def test_secrets_stay_on_this_machine():
    env, notes = job_env({"UNLEARN_HOME": "/shared/unlearn", "UNLEARN_TOKEN": "t" * 40, "RAY_AUTH_TOKEN": "r" * 40,
                          "UNLEARN_LEDGER_URL": "postgresql+psycopg://unlearn:s3cret@db:5432/ledger",
                          "MLFLOW_TRACKING_URI": "https://bob:pw@mlflow.internal", "PATH": "/usr/bin"})
    assert env == {"UNLEARN_HOME": "/shared/unlearn", REQUIRE_ENV: "1"}
    assert "s3cret" not in repr((env, notes)) and "t" * 40 not in repr((env, notes)) and "pw@" not in repr(env)
    assert any("UNLEARN_LEDGER_URL holds a password" in n for n in notes)
    assert any("UNLEARN_TOKEN is not sent" in n for n in notes)


def test_urls_without_credentials_travel():
    env, notes = job_env({"UNLEARN_LEDGER_URL": "postgresql+psycopg://unlearn@db/ledger",
                          "MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert env == {"UNLEARN_LEDGER_URL": "postgresql+psycopg://unlearn@db/ledger",
                   "MLFLOW_TRACKING_URI": "http://mlflow:5000"} and not notes


def test_a_job_without_the_ledger_url_it_needs_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("UNLEARN_LEDGER_URL", raising=False)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(UserError, match="set UNLEARN_LEDGER_URL in the cluster's environment"):
        Home(tmp_path).ledger_url
    monkeypatch.setenv("UNLEARN_LEDGER_URL", "postgresql+psycopg://u:p@db/l")  # from the cluster's Secret
    assert Home(tmp_path).ledger_url.endswith("@db/l")
