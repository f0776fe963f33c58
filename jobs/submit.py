"""`unlearn submit`: run an `unlearn` subcommand on a Ray cluster through the Ray Jobs API.

    unlearn submit --address http://head:8265 --wait -- nightly --workers 4 --gpu

The project directory travels as the job's runtime_env working_dir (without .venv,
.unlearn, out/ and .git), and the entrypoint is `python -m jobs.cli <subcommand>` on the
head. A `nightly` gets the submission id `nightly-YYYYMMDD` (UTC) unless you give one:
Ray refuses a duplicate id, so a second nightly the same night is refused and says so.
`--wait` streams the job's logs and exits with the job's own exit status.

Token auth (Ray >= 2.59 heads may require one): the client sends `RAY_AUTH_TOKEN` when it
is set (or the token file Ray writes for a local head); a 401 says what to set.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

PROJECT = Path(__file__).resolve().parents[1]
EXCLUDES = [".unlearn", "out", "**/__pycache__", "*.egg-info", ".devdata", ".notes", "benchmarks"]  # .git, .venv: Ray's own
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
FORWARDED_ENV = ("UNLEARN_HOME", "UNLEARN_LEDGER_URL", "MLFLOW_TRACKING_URI")
# Never sent: the Ray dashboard shows every job's runtime_env to anyone who can open it.
SECRET_ENV = ("UNLEARN_TOKEN", "RAY_AUTH_TOKEN")
REQUIRE_ENV = "UNLEARN_REQUIRE_LEDGER_URL"  # the job must find the ledger URL on the cluster


def job_env(environ: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The variables a job gets (runtime_env env_vars) and one note per value kept back.

    A URL with a password in it (the ledger's, MLflow's) stays on this machine: the job
    then requires the cluster to set it (from a Kubernetes Secret, see deploy/) and fails
    with one line if it does not, rather than silently opening a ledger of its own."""
    from urllib.parse import urlsplit

    env, notes = {}, []
    for k in FORWARDED_ENV:
        if k not in environ:
            continue
        try:
            secret = urlsplit(environ[k]).password is not None
        except ValueError:
            secret = True  # unparseable: do not guess, do not send
        if secret:
            notes.append(f"{k} holds a password: not sent with the job (the Ray dashboard shows its environment); "
                         f"the job reads {k} from the cluster's environment")
            if k == "UNLEARN_LEDGER_URL":
                env[REQUIRE_ENV] = "1"
        else:
            env[k] = environ[k]
    notes += [f"{k} is not sent with the job (a secret); set it on the cluster if the job needs it"
              for k in SECRET_ENV if k in environ and k != "RAY_AUTH_TOKEN"]
    return env, notes


def default_submission_id(command: list[str]) -> str | None:
    if command and command[0] == "nightly":
        return time.strftime("nightly-%Y%m%d", time.gmtime())
    return None


def client_for(address: str | None):
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    if not address.startswith(("http://", "https://")):
        raise UserError(f"--address {address!r}: the Jobs API wants the dashboard URL, e.g. http://head:8265")
    headers = {}
    if os.environ.get("RAY_AUTH_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['RAY_AUTH_TOKEN']}"
    try:
        return JobSubmissionClient(address, headers=headers or None), address
    except Exception as e:  # unreachable, refused, 401
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "401" in text or "authentication" in text.lower():
            raise UserError(f"the Ray head at {address} wants a token: set RAY_AUTH_TOKEN (see README)") from None
        raise UserError(f"cannot reach the Ray Jobs API at {address}: {text}") from None


def submit(address: str | None, command: list[str], submission_id: str | None, wait: bool, log=print) -> int:
    if not command:
        raise UserError("say what to run after --, e.g. `unlearn submit -- nightly --workers 4`")
    if command[0] in ("submit", "serve", "demo"):
        raise UserError(f"`unlearn {command[0]}` is not a batch job; run it where it should live")
    import logging

    for name in ("ray._private.runtime_env.packaging", "ray.dashboard.modules.dashboard_sdk",
                 "ray._private.runtime_env.working_dir"):
        logging.getLogger(name).setLevel(logging.ERROR)  # per-file upload chatter
    client, address = client_for(address)
    sid = submission_id or default_submission_id(command)
    env_vars, notes = job_env(dict(os.environ))
    for note in notes:
        log(note)
    runtime_env: dict[str, Any] = {"working_dir": str(PROJECT), "excludes": EXCLUDES, "env_vars": env_vars}
    entrypoint = "python -m jobs.cli " + " ".join(shlex.quote(c) for c in command)
    try:
        job_id = client.submit_job(entrypoint=entrypoint, submission_id=sid, runtime_env=runtime_env,
                                   metadata={"unlearn_command": command[0]})
    except Exception as e:
        text = str(e)
        if sid and "already exists" in text:
            status = client.get_job_status(sid)
            raise UserError(f"{sid} was already submitted (status {status}); a nightly runs once a night. "
                            f"Give another --submission-id to force a second run") from None
        raise UserError(f"the Ray Jobs API refused the job: {text.splitlines()[0] if text else type(e).__name__}") from None
    log(f"submitted {job_id} to {address}: {entrypoint}")
    if not wait:
        log(f"follow it with `ray job logs --address {address} -f {job_id}`")
        return 0
    return follow(client, job_id)


def follow(client, job_id: str) -> int:
    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(tail())
    except Exception:  # log streaming is best effort; the status below is what counts
        pass
    while (info := client.get_job_info(job_id)).status not in TERMINAL:
        time.sleep(1.0)
    code = getattr(info, "driver_exit_code", None)
    if info.status == "SUCCEEDED":
        return 0
    print(f"job {job_id} {info.status}: {info.message or ''}".strip(), file=sys.stderr)
    return int(code) if isinstance(code, int) and code > 0 else 1
