"""The edge where work meets a Ray cluster: join one (or start a local one), and tell
in seconds when an address cannot work.

Used by everything that runs on Ray: training and unlearning (`pipeline.ray.train`),
serving (`jobs.serve`) and the commands that check the cluster before their first write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.errors import UserError


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS); without either, start a local one.

    "local" rather than a bare init: a stale /tmp/ray/ray_current_cluster left by an
    unstopped `ray start` would otherwise make Ray try to join a dead cluster.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION", "0")
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    check_reachable(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False} if address == "local" else {}
    if address == "local" and num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e}") from None


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Is a Ray cluster there at all? HOST:PORT, ray://HOST:PORT, auto (or $RAY_ADDRESS) get
    a TCP connect to the host and port, read the way Ray reads them (IPv6 in brackets too).

    Fails in seconds with one line instead of after a minute of GCS retries. Commands that
    write state call it before their first write, so an unreachable cluster changes nothing.
    """
    import socket

    from ray._common.network_utils import parse_address
    from ray._common.utils import get_ray_address_file

    address = (address if address is not None else os.environ.get("RAY_ADDRESS")) or "local"
    if address == "local":
        return
    if address == "auto" and os.environ.get("RAY_ADDRESS", "auto") not in ("", "auto"):
        address = os.environ["RAY_ADDRESS"]  # what ray.init("auto") would use first
    if address == "auto":  # the cluster `ray start` recorded on this machine, if any
        current = Path(get_ray_address_file(None))
        if not current.exists():
            raise UserError("--address auto: no Ray cluster was started on this machine (`ray start --head`); "
                            "leave --address out for a local Ray")
        target = current.read_text().strip()
    elif address.startswith(("http://", "https://")):
        raise UserError(f"{address} is a dashboard / Jobs API URL: join the cluster's GCS at HOST:PORT "
                        f"(e.g. 10.0.0.1:6379), or run the command as a job with `unlearn submit --address {address}`")
    else:
        target = address.removeprefix("ray://")
    parsed = parse_address(target)
    if parsed is None or not parsed[1].isdigit():
        raise UserError(f"{address!r} is not a Ray address: give HOST:PORT, ray://HOST:PORT, auto or local")
    host, port = parsed
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None
