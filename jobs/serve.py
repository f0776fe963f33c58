"""`unlearn serve`: the champion on Ray Serve, on 127.0.0.1:8000 unless told otherwise.

    unlearn serve                      # foreground; Ctrl-C stops it
    unlearn serve --detach             # in the background; prints the URL and returns
    unlearn serve --stop               # stops the background server of this $UNLEARN_HOME

While it runs, `$UNLEARN_HOME/serving.json` names its URL, pid and host: the nightly batch
reads it to wait until every replica serves the new version before purging
(`jobs.served`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from pipeline.errors import UserError
from pipeline.ops.home import Home
from pipeline.ops.ledger import pid_alive
from serving.board import APP_NAME  # the one name the nightly looks for

SERVING_FILE = "serving.json"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def serving_info(home: Home) -> dict[str, Any] | None:
    path = home.root / SERVING_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_serving_info(home: Home, url: str, pid: int | None = None) -> None:
    """Name the running server in `$UNLEARN_HOME/serving.json`: URL, pid and host. The host
    lets the nightly prove a server dead (same host, pid gone) instead of guessing."""
    from pipeline.artifacts import write_json

    write_json(home.root / SERVING_FILE, {"url": url, "pid": os.getpid() if pid is None else pid,
                                          "host": socket.gethostname(),
                                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def start_app(home: Home, host: str, port: int, replicas: int, poll_s: float, max_batch_size: int,
              address: str | None = None, log=print, autoscaling: dict | None = None, route_prefix: str = "/") -> str:
    """Deploy the app on the connected (or a new local) Ray; return its URL once healthy."""
    from ray import serve

    from pipeline.ray.cluster import check_reachable, connect
    from serving.app import AppArgs, build

    state = home.state()
    if home.registry().champion() is None:
        raise UserError("no champion model yet: run `unlearn init --dataset NAME` first")
    if not port_free(host, port):
        raise UserError(f"port {port} on {host} is taken: stop what uses it or pass --port")
    try:
        args = AppArgs(home=str(home.root), replicas=replicas, poll_s=poll_s, max_batch_size=max_batch_size,
                       **({k: autoscaling[k] for k in ("min_replicas", "max_replicas", "target_ongoing_requests")}
                          if autoscaling else {}))
    except ValueError as e:  # pydantic's ValidationError: one line, as for every user mistake
        first = e.errors()[0] if hasattr(e, "errors") else {}
        raise UserError(f"serve: {'.'.join(map(str, first.get('loc', ())))} {first.get('msg', e)}") from None
    check_reachable(address)  # before the token file is created: a mistake changes nothing
    most = autoscaling["max_replicas"] if autoscaling else replicas
    connect(address, num_cpus=max(os.cpu_count() or 1, most + 2))  # a CPU per replica, and some to spare
    serve.start(http_options={"host": host, "port": port})
    serve.run(build(args), name=APP_NAME, route_prefix=route_prefix)
    url = f"http://{host}:{port}{route_prefix.rstrip('/')}"
    deadline = time.monotonic() + 120
    while True:
        try:
            health = get_json(f"{url}/healthz")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(f"the app did not answer on {url} within 120 s") from None
            time.sleep(0.5)
    log(f"serving {state['model_name']} v{health['model_version']} on {url} ({replicas} replica(s))")
    return url


def run_serve(home: Home, host: str, port: int, replicas: int, poll_s: float, max_batch_size: int,
              address: str | None, log=print, autoscaling: dict | None = None, route_prefix: str = "/") -> int:
    from ray import serve

    url = start_app(home, host, port, replicas, poll_s, max_batch_size, address, log, autoscaling, route_prefix)
    path = home.root / SERVING_FILE
    write_serving_info(home, url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log("stop with Ctrl-C or `unlearn serve --stop`")
    try:
        stop.wait()
    finally:
        path.unlink(missing_ok=True)
        # this application only: on a shared cluster, other teams' Serve apps keep running
        serve.delete(APP_NAME)
        log("stopped")
    return 0


def detach(home: Home, argv: list[str], log=print) -> int:
    """Start `unlearn serve` (without --detach) in its own session; return once it serves."""
    if (info := serving_info(home)) and pid_alive(info["pid"]) and is_our_server(info["pid"]):
        raise UserError(f"already serving on {info['url']} (pid {info['pid']}); `unlearn serve --stop` first")
    home.root.mkdir(parents=True, exist_ok=True)
    logfile = open(home.root / "serve.log", "ab")
    args = [a for a in argv if a != "--detach"]
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], stdout=logfile, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (home.root / "serve.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise UserError(f"the server exited at start-up: {tail[0] if tail else 'see ' + str(home.root / 'serve.log')}")
        info = serving_info(home)
        if info and info["pid"] == proc.pid:
            log(f"serving on {info['url']} (pid {proc.pid}; log {home.root / 'serve.log'}); "
                f"stop with `unlearn serve --stop`")
            return 0
        time.sleep(0.5)
    proc.terminate()
    raise UserError("the server did not come up within 180 s; see " + str(home.root / "serve.log"))


def is_our_server(pid: int) -> bool:
    """Whether `pid` still runs `unlearn serve`: after a SIGKILL, serving.json stays behind
    and the pid may belong to any process since. Unverifiable (no /proc): assumed ours."""
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except FileNotFoundError:
        return not os.path.isdir("/proc")
    except OSError:
        return False
    return b"serve" in cmdline and any(b"jobs.cli" in part or part.endswith(b"unlearn") for part in cmdline)


def stop(home: Home, log=print) -> int:
    info = serving_info(home)
    if not info:  # the state asked for already holds: cleanup scripts call this unconditionally
        log(f"nothing is serving from {home.root}")
        return 0
    pid = info["pid"]
    if pid_alive(pid) and not is_our_server(pid):
        log(f"pid {pid} of {home.root / SERVING_FILE} is another program now (the server died without "
            f"cleaning up): not signalled; the stale file is removed")
    elif pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    (home.root / SERVING_FILE).unlink(missing_ok=True)
    log(f"stopped the server on {info['url']} (pid {pid})")
    return 0
