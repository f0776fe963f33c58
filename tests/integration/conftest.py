"""One local Ray for every integration test (start-up costs seconds and ~1 GB).

Logical CPUs are over-subscribed (4 on a 2-core machine): two one-CPU Train workers
plus the Train controller would otherwise leave Ray Data no CPU for its read tasks,
and the run would wait forever (seen with num_cpus=2).
"""

import os

import pytest

os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray Train's controller polls workers every 2 s; each run ends up to one poll after its
# last report. Polling faster saves ~2 s per run in a suite that runs dozens of them.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             object_store_memory=512 * 1024 * 1024)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def digits_home(tmp_path_factory):
    """The digits sample store, ingested once."""
    from pipeline.datasets import open_store

    home = tmp_path_factory.mktemp("home")
    open_store("digits", home)
    return home


@pytest.fixture(scope="session")
def deployment(ray_cluster, tmp_path_factory):
    """`unlearn init` on digits, once: (home, ledger, registry). Nightly and serving tests
    add their own requests and versions to it."""
    from pathlib import Path

    from jobs.init import run_init
    from pipeline.ops.home import Home
    from pipeline.ops.ledger import Ledger
    from pipeline.ops.registry import Registry
    from pipeline.ray.train import RayOptions

    root = Path(__file__).resolve().parents[2]
    home = Home(tmp_path_factory.mktemp("deployment").resolve())
    run_init(home, "digits", RayOptions(), root / "pipeline/configs/digits.yaml", log=lambda *a: None)
    state = home.state()
    return home, Ledger(home.ledger_url), Registry(home.tracking_uri, state["model_name"], home.artifacts)
