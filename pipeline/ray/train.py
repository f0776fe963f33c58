"""Ray Train at the edge: the same plain-PyTorch unlearning loop on N workers.

The driver resolves the forget set, builds the two Ray Datasets (forget, retain) and a
TorchTrainer whose train function calls `pipeline.unlearn.unlearn` with hooks for
what distribution adds: a step count agreed by all workers, gradient averaging
(`pipeline.collective`, inside the loop), checkpoints of the loop's whole state every
epoch, resume after a lost worker, and the final model back to the driver.

Data layout per worker, for a global forget batch Bf and retain batch Br:
- retain: always sharded (Ray Train's equal split); each worker draws Br / N per step.
  The split leaves out up to N - 1 retain rows (kept data, not a deletion); training
  (`train_on_ray`) pads its table instead, so a trained model saw every row.
- forget: replicated to every worker when it has fewer than N x Bf rows (sharding it
  would leave workers less than one batch an epoch, or none: 3 samples on 8 workers);
  then every worker uses the same Bf forget rows per step (same seed, same order). At
  N x Bf rows or more it is sharded, and each worker draws Bf / N per step.
Either way every worker takes ceil(n_forget / Bf) steps per epoch, and after each
step's all-reduce all workers hold the same weights.

LUR's lookahead uses each worker's own retain gradient (the outer gradient is then
averaged): with one worker that is exactly the local loop.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from pipeline import collective, loop_state
from pipeline.errors import UserError
from pipeline.models import build_model, save_checkpoint
from pipeline.ray.cluster import connect
from pipeline.unlearn import UnlearnConfig

RESULT_JSON = "unlearn_result.json"


@dataclass
class RayOptions:
    """How to run on Ray; none of it changes what the method computes."""

    workers: int = 1
    address: str | None = None  # None: $RAY_ADDRESS, else a local Ray started on first use
    gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    autocast_bf16: bool = False  # GPU only
    max_failures: int = 0
    storage_path: str | None = None  # default: $UNLEARN_HOME/ray_results
    name: str | None = None
    replicate_forget_below: int | None = None  # rows; default N x forget_batch
    # Fault injection for tests, off by default: worker `fail_rank` exits at step `fail_at_step`, once.
    fail_at_step: int | None = None
    fail_rank: int = 0
    # Ray Train V2 registers a reported checkpoint when its controller next polls the
    # workers (every 2 s): a worker lost sooner restarts without it. The injected
    # failure waits this long first, so it tests resume rather than that race.
    fail_delay_s: float = 5.0


def plan(n_forget: int, cfg: UnlearnConfig, opts: RayOptions) -> dict[str, Any]:
    """Per-worker batch sizes, steps per epoch and the forget layout, checked up front."""
    n = opts.workers
    if n < 1:
        raise UserError("--workers must be at least 1")
    if cfg.retain_batch < n:
        raise UserError(f"retain_batch {cfg.retain_batch} is smaller than --workers {n}: each worker needs a retain batch")
    threshold = opts.replicate_forget_below if opts.replicate_forget_below is not None else n * cfg.forget_batch
    replicate = n == 1 or n_forget < threshold
    if not replicate and cfg.forget_batch < n:
        raise UserError(f"forget_batch {cfg.forget_batch} is smaller than --workers {n}")
    return {
        "replicate_forget": replicate,
        "forget_batch_per_worker": cfg.forget_batch if replicate else cfg.forget_batch // n,
        "retain_batch_per_worker": cfg.retain_batch // n,
        "steps_per_epoch": math.ceil(n_forget / cfg.forget_batch),
        "n_forget": n_forget,
        "pad_forget_to": 1 if replicate else n,
    }


def _fault_hook(config: dict[str, Any], rank: int):
    at, marker, delay = config.get("fail_at_step"), config.get("fail_marker"), config.get("fail_delay_s", 0.0)
    if at is None or rank != config.get("fail_rank", 0):
        return None

    def on_step(step: int) -> None:
        if step == at and not os.path.exists(marker):
            Path(marker).touch()  # once: the restarted worker passes this step
            time.sleep(delay)
            os._exit(1)  # a hard crash, as a lost node looks to Ray Train

    return on_step


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. Plain PyTorch inside; Ray only for data, the
    context and reporting."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    card, shape = config["card"], tuple(config["card"]["input_shape"])
    torch.manual_seed(config["unlearn"]["seed"])
    model = build_model(card["arch"], shape, card["num_classes"], **card["model_kwargs"])
    model.load_state_dict(load_bytes(config["weights"]))
    if world > 1:  # BatchNorm over the global batch, as one worker would compute it
        collective.convert_batchnorm(model)
    model.to(device)

    from pipeline.ray.data import shard_to_tensors

    # The two shards are read at once: each read is mostly Ray Data's start-up latency
    # (scheduling its tasks, the split coordinator), which overlaps.
    with ThreadPoolExecutor(2) as pool:
        forget, retain = (pool.submit(shard_to_tensors, ray.train.get_dataset_shard(name), shape, device)
                          for name in ("forget", "retain"))
        (xf, yf, _), (xr, yr, _) = forget.result(), retain.result()
    p = config["plan"]
    rows = collective.scalar_sum(len(yf), device) / (world if p["replicate_forget"] else 1)
    if round(rows) < p["n_forget"]:
        raise RuntimeError(f"forget rows lost in sharding: {rows} of {p['n_forget']}")
    if len(yr) == 0:
        raise RuntimeError(f"worker {rank} received no retain rows")

    cfg = UnlearnConfig.from_dict({**config["unlearn"], "forget_batch": p["forget_batch_per_worker"],
                                   "retain_batch": p["retain_batch_per_worker"]})
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            resume = loop_state.load(d)

    def on_epoch_end(epochs_done: int, state: dict[str, Any]) -> None:
        divergence = collective.max_weight_divergence(model)
        metrics = {"epoch": epochs_done, "step": state["meta"]["step"], "weight_divergence": divergence,
                   "loss": float(sum(state["meta"]["result"]["losses"][-p["steps_per_epoch"]:]) / p["steps_per_epoch"])}
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                loop_state.save(Path(d), state)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)

    from pipeline.unlearn import LoopHooks, unlearn

    hooks = LoopHooks(
        steps_per_epoch=p["steps_per_epoch"],
        resume=resume,
        on_epoch_end=on_epoch_end,
        on_step=_fault_hook(config, rank),
        autocast=torch.bfloat16 if config.get("autocast_bf16") and device.type == "cuda" else None,
    )
    result = unlearn(model, (xf, yf), (xr, yr), cfg, desc=f"{cfg.method}[{rank}]", hooks=hooks)
    divergence = collective.max_weight_divergence(model)
    sample_grads = collective.scalar_sum(result.sample_grads, device)
    summary = {**result.summary(), "sample_grads": sample_grads, "conflict": result.conflict,
               "losses": result.losses, "step_times": result.step_times,  # rank 0's curve, for MLflow
               "weight_divergence": divergence, "workers": world, "resumed": resume is not None,
               "forget_rows": round(rows), "retain_rows": round(collective.scalar_sum(len(yr), device))}
    metrics = {"epoch": cfg.epochs, "final": True, "weight_divergence": divergence}
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(Path(d) / "model", model, card)
            (Path(d) / RESULT_JSON).write_text(json.dumps(summary))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def _fit_trainer(fn, config: dict[str, Any], datasets: dict[str, Any], split: list[str], opts: RayOptions,
                 storage: Path, name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Run `fn` on the worker group and read back the final checkpoint (model + summary)."""
    from ray.train import DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.models import load_checkpoint

    storage.mkdir(parents=True, exist_ok=True)
    resources = {"CPU": opts.cpus_per_worker, **({"GPU": opts.gpus_per_worker} if opts.gpu else {})}
    trainer = TorchTrainer(
        fn,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=opts.workers, use_gpu=opts.gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if opts.gpu else "gloo"),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=split),
        run_config=RunConfig(name=name, storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=opts.max_failures)),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    with result.checkpoint.as_directory() as d:
        if not (Path(d) / RESULT_JSON).exists():
            raise RuntimeError(f"run {name} ended without its final checkpoint")
        model, _ = load_checkpoint(Path(d) / "model")
        summary = json.loads((Path(d) / RESULT_JSON).read_text())
    summary.update(run_name=name, storage_path=str(storage))
    return model, summary


def _connect_for(opts: RayOptions) -> None:
    # A local Ray advertises at least the workers' CPUs plus two: Ray Data's read tasks
    # need a CPU the workers do not hold, or the run waits forever (measured: `ray.init(num_cpus=2)`
    # with two one-CPU workers hangs).
    need = math.ceil(opts.workers * opts.cpus_per_worker)
    connect(opts.address, num_cpus=max(os.cpu_count() or 1, need + 2))
    check_resources(opts, joined=(opts.address or os.environ.get("RAY_ADDRESS") or "local") != "local")


def unlearn_on_ray(model: torch.nn.Module, card: dict[str, Any], store: str, forget_ids: list[str],
                   cfg: UnlearnConfig, opts: RayOptions, home: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Unlearn `forget_ids` from `model` on Ray; returns the unlearned model (on CPU) and
    the run summary (loop seconds, sample-gradients, conflict telemetry, wall time)."""
    from pipeline.ray.data import forget_retain

    p = plan(len(set(forget_ids)), cfg, opts)
    wall = time.perf_counter()
    _connect_for(opts)
    forget_ds, retain_ds = forget_retain(store, forget_ids, pad_to_multiple=p["pad_forget_to"])
    storage = Path(opts.storage_path or Path(home) / "ray_results").resolve()
    name = opts.name or f"unlearn-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    config = {
        "card": card,
        "weights": save_bytes({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}),
        "unlearn": cfg.to_dict(),
        "plan": p,
        "autocast_bf16": opts.autocast_bf16,
    }
    if opts.fail_at_step is not None:
        config.update(fail_at_step=opts.fail_at_step, fail_rank=opts.fail_rank, fail_delay_s=opts.fail_delay_s,
                      fail_marker=str(storage / f".{name}.fault-injected"))
    unlearned, summary = _fit_trainer(train_loop_per_worker, config, {"forget": forget_ds, "retain": retain_ds},
                                      ["retain"] if p["replicate_forget"] else ["retain", "forget"], opts, storage, name)
    summary.update(plan=p, wall_seconds=time.perf_counter() - wall)
    summary["conflict"] = [tuple(c) for c in summary["conflict"]]
    return unlearned, summary


def fit_loop_per_worker(config: dict[str, Any]) -> None:
    """Supervised training on every Ray Train worker: the original model, and the retrain
    fallback of the nightly batch. The same plain `pipeline.train.fit` as the local path;
    with N workers each draws batch/N rows of its shard per step and gradients are averaged."""
    import ray.train
    import ray.train.torch

    from pipeline.config import TrainConfig
    from pipeline.ray.data import shard_to_tensors
    from pipeline.train import fit

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    card, shape = config["card"], tuple(config["card"]["input_shape"])
    cfg = TrainConfig.from_dict(config["train"])
    torch.manual_seed(cfg.seed)  # the same initial weights on every worker
    model = build_model(card["arch"], shape, card["num_classes"], **card["model_kwargs"])
    if world > 1:
        collective.convert_batchnorm(model)
    model.to(device)
    x, y, _ = shard_to_tensors(ray.train.get_dataset_shard("train"), shape, device)
    rows = round(collective.scalar_sum(len(y), device))
    expected = config["rows"] + config.get("padded_rows", 0)
    if rows != expected or len(y) == 0:
        raise RuntimeError(f"train rows lost in sharding: {rows} of {expected} (worker {rank} has {len(y)})")
    rows = config["rows"]  # the steps an epoch are those of the unpadded table, as on one worker
    steps = math.ceil(rows / cfg.batch_size)
    cost = fit(model, x, y, cfg, desc=f"train[{rank}]", steps_per_epoch=steps if world > 1 else None,
               batch_size=cfg.batch_size // world, after_backward=collective.sync_step if world > 1 else None)
    summary = {**cost, "sample_grads": collective.scalar_sum(cost["sample_grads"], device), "workers": world,
               "rows": rows, "padded_rows": config.get("padded_rows", 0),
               "weight_divergence": collective.max_weight_divergence(model)}
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(Path(d) / "model", model, card)
            (Path(d) / RESULT_JSON).write_text(json.dumps(summary))
            ray.train.report({"final": True}, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report({"final": True})


def train_on_ray(card: dict[str, Any], store: str, exclude_ids: list[str], train_cfg, opts: RayOptions, home: Path,
                 rows: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a fresh model of `card` on the store's train rows minus `exclude_ids`.

    `rows` is the number of rows that must arrive (checked on the workers). On N workers
    the table is padded to a multiple of N (`pipeline.ray.data.pad_to_multiple_of`): no
    row is dropped, at most N - 1 are drawn twice an epoch. No mid-run checkpoints: a
    lost worker restarts training from the beginning."""
    from pipeline.ray.data import forget_retain, pad_to_multiple_of

    if train_cfg.batch_size < opts.workers:
        raise UserError(f"batch_size {train_cfg.batch_size} is smaller than --workers {opts.workers}")
    wall = time.perf_counter()
    _connect_for(opts)
    _, retain_ds = forget_retain(store, exclude_ids)
    storage = Path(opts.storage_path or Path(home) / "ray_results").resolve()
    name = opts.name or f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    padded = (-rows) % opts.workers
    config = {"card": card, "train": train_cfg.to_dict(), "rows": rows, "padded_rows": padded}
    train_ds = pad_to_multiple_of(retain_ds, rows, opts.workers)
    model, summary = _fit_trainer(fit_loop_per_worker, config, {"train": train_ds}, ["train"], opts, storage, name)
    summary["wall_seconds"] = time.perf_counter() - wall
    return model, summary


def check_resources(opts: RayOptions, joined: bool = False) -> None:
    """Refuse a run a local Ray can never schedule instead of waiting for it forever.

    A cluster this process joined (`--address`, $RAY_ADDRESS) is not refused: it may
    autoscale (a CPU-0 head and GPU groups at zero nodes are the usual production shape),
    and Ray Train waits for the autoscaler to add the nodes. What it has now is logged."""
    import logging

    import ray

    total = ray.cluster_resources()
    if joined:
        need_gpu = opts.workers * opts.gpus_per_worker if opts.gpu else 0
        if opts.workers * opts.cpus_per_worker + 1 > total.get("CPU", 0) or need_gpu > total.get("GPU", 0):
            logging.getLogger("unlearn").warning(
                "the cluster has %g CPUs and %g GPUs now; %d workers need more: waiting for its autoscaler to add "
                "nodes", total.get("CPU", 0), total.get("GPU", 0), opts.workers)
        return
    cpus, gpus = total.get("CPU", 0), total.get("GPU", 0)
    if opts.workers * opts.cpus_per_worker + 1 > cpus:
        raise UserError(f"{opts.workers} workers x {opts.cpus_per_worker} CPUs, plus one CPU for Ray Data, exceed the "
                        f"cluster's {cpus:g} CPUs: use fewer --workers or a smaller --cpus-per-worker")
    if opts.gpu and opts.workers * opts.gpus_per_worker > gpus:
        raise UserError(f"{opts.workers} GPU workers need {opts.workers * opts.gpus_per_worker:g} GPUs; "
                        f"the cluster has {gpus:g}")



def problem_engine(problem, opts: RayOptions, home: Path):
    """`pipeline.problem.run_method`'s engine on Ray: the method runs on Ray Train workers
    reading the problem's store through Ray Data; evaluation stays on the driver."""
    if problem.store is None:
        raise UserError("the Ray engine reads the sample store: it cannot run on a holdout or subsample problem")

    def run(model: torch.nn.Module, cfg: UnlearnConfig):
        return unlearn_on_ray(model, problem.card, problem.store, problem.forget_ids, cfg, opts, home)

    return run
