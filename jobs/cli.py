"""The `unlearn` command line.

    unlearn demo
    unlearn init --dataset fashion-mnist && unlearn serve --detach
    unlearn request add --subject fm-train-subj-000007 && unlearn nightly --workers 2
    unlearn bench --dataset digits --forget random:0.1 --methods all --out out/digits

Every subcommand has --help. `$UNLEARN_HOME` (default ./.unlearn) holds the sample
store, cached models, the ledger and MLflow. A user mistake ends with one line on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from pipeline.errors import UserError

EXIT_GATE_FAILED = 3  # `unlearn nightly`: the gates refused the batch; the champion stays
EXIT_UNCONFIRMED = 4  # `unlearn nightly`: registered, but serving did not confirm it; nothing purged
EXIT_LOCK_LOST = 5  # `unlearn nightly`: another machine took the lock over; this run stopped


def home() -> Path:
    from pipeline.ops.home import Home

    return Home.from_env().root


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise UserError("--seeds is empty")
    if min(seeds) < 0:
        raise UserError(f"--seeds {text!r}: seeds must not be negative")
    return seeds


def output_dir(text: str) -> Path:
    """--out: refuse a path that cannot become a directory before any work is done."""
    out = Path(text)
    if not text.strip():
        raise UserError("--out is empty: name an output directory")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    return out


def check_seed(seed: int) -> int:
    if seed < 0:
        raise UserError(f"--seed {seed}: seeds must not be negative")
    return seed


ENVIRONMENT = """environment:
  UNLEARN_HOME         the deployment: store, ledger, MLflow, token (default: ./.unlearn)
  UNLEARN_LEDGER_URL   SQLAlchemy URL of the ledger (default: sqlite:///$UNLEARN_HOME/ledger.db)
  MLFLOW_TRACKING_URI  MLflow tracking + registry (default: sqlite:///$UNLEARN_HOME/mlflow.db)
  RAY_ADDRESS          Ray cluster to join, or the Jobs API URL for submit (default: a local Ray)
  UNLEARN_TOKEN        bearer token for /deletions (default: $UNLEARN_HOME/token, created 0600)
  RAY_AUTH_TOKEN       token of a Ray head started with token auth (submit)

A user mistake ends with one line on stderr and exit 2; a failed gate exits 3.
Every command has --help."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (plus where to look), like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default once: not when the help already says it, and not for
    required options, flags or "no value" (argparse's own formatter prints "(default: None)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.required or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def add_ray_args(p: argparse.ArgumentParser, what: str = "the unlearning") -> None:
    g = p.add_argument_group("Ray", f"where and how {what} runs on Ray Train")
    g.add_argument("--workers", type=int, default=1, help="Ray Train workers (data-parallel)")
    g.add_argument("--address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    g.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL; CPU workers use gloo")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="logical CPUs each worker reserves")
    g.add_argument("--gpus-per-worker", type=float, default=1.0, help="GPUs each worker reserves with --gpu (0.5 packs two)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (with --gpu)")
    g.add_argument("--max-failures", type=int, default=2, help="worker failures to survive by resuming from the last epoch")
    g.add_argument("--replicate-forget-below", type=int, default=None,
                   help="replicate (not shard) a forget set with fewer rows (default: workers x forget_batch)")


def ray_options(args: argparse.Namespace):
    from pipeline.ray.train import RayOptions

    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.bf16 and not args.gpu:
        raise UserError("--bf16 needs --gpu: bfloat16 autocast is for GPU workers")
    if args.cpus_per_worker <= 0 or args.gpus_per_worker <= 0:
        raise UserError("--cpus-per-worker and --gpus-per-worker must be positive")
    if args.max_failures < 0:
        raise UserError("--max-failures must not be negative")
    if args.replicate_forget_below is not None and args.replicate_forget_below < 0:
        raise UserError("--replicate-forget-below must not be negative")
    local = (args.address or os.environ.get("RAY_ADDRESS") or "local") == "local"
    cores = os.cpu_count() or 1
    if local and args.workers > 2 * cores:
        # A local Ray would start them all, each a process with its own torch, on these cores.
        raise UserError(f"--workers {args.workers} on a local Ray with {cores} CPU cores: use at most {2 * cores}, "
                        f"or join a cluster with --address")
    return RayOptions(workers=args.workers, address=args.address, gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                      gpus_per_worker=args.gpus_per_worker,
                      autocast_bf16=args.bf16, max_failures=args.max_failures,
                      replicate_forget_below=args.replicate_forget_below)


def cmd_forget(args: argparse.Namespace) -> int:
    from jobs.forget import forget_spec_of, run_forget
    from pipeline.configs import default_config_path
    from pipeline.methods import METHODS
    from pipeline.ray.cluster import check_reachable

    spec = forget_spec_of(args.samples, args.subjects, args.forget)
    out = output_dir(args.out)
    check_seed(args.seed)
    check_reachable(args.address)
    if args.method not in METHODS:
        raise UserError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    config = Path(args.config) if args.config else default_config_path(args.dataset)
    run_forget(args.dataset, spec, args.method, out, home(), ray_options(args), config,
               Path(args.start_from) if args.start_from else None, args.seed)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from jobs.bench import parse_methods, run_bench

    methods = parse_methods(args.methods)
    if not methods:
        raise UserError("--methods is empty: name methods like lur,finetune or say all")
    from pipeline.methods import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown methods {unknown}; choose from {', '.join(METHODS)} or all")
    from pipeline.methods import ORACLE

    if methods == [ORACLE]:
        raise UserError(f"{ORACLE} is the oracle every method is compared with, and always runs: "
                        f"name the methods to compare, e.g. --methods lur,finetune")
    out = output_dir(args.out)
    from pipeline.devices import resolve_device

    device = resolve_device(args.device)
    if args.engine == "local" and (args.workers != 1 or args.gpu or args.address):
        raise UserError("--workers, --gpu and --address run on Ray: add --engine ray")
    ray_opts = ray_options(args) if args.engine == "ray" else None
    run_bench(args.dataset, args.forget, methods, parse_seeds(args.seeds), out, home(),
              Path(args.config) if args.config else None, device=device, ray_opts=ray_opts)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from jobs.bench import render

    try:
        render(Path(args.out))
    except (ValueError, KeyError, TypeError) as e:  # a results.json this version did not write
        raise UserError(f"{Path(args.out) / 'results.json'} is not a benchmark result ({type(e).__name__}: {e})") from None
    print(f"wrote {Path(args.out) / 'report.md'} and plots")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from jobs.bench import parse_methods
    from jobs.tune import run_tune
    from pipeline.configs import default_config_path, default_grid_path

    config = Path(args.config) if args.config else default_config_path(args.dataset)
    grid = Path(args.grid) if args.grid else default_grid_path(config)
    from pipeline.devices import resolve_device

    device = resolve_device(args.device)
    out = output_dir(args.out)
    check_seed(args.seed)
    run_tune(args.dataset, args.forget, parse_methods(args.methods), out, home(), config, grid,
             args.holdout, args.subsample, args.seed, device=device)
    return 0


def deployment():
    from pipeline.ops.home import Home

    return Home.from_env()


def progress(args: argparse.Namespace):
    """Where a command's progress lines go: stdout, or stderr under --json (stdout then
    holds the one JSON document a script parses)."""
    if getattr(args, "json", False):
        return lambda *a: print(*a, file=sys.stderr, flush=True)
    return print


def result_only_on_stdout(args: argparse.Namespace):
    """Under --json, anything a library prints to stdout while the command runs goes to
    stderr: stdout is the JSON document alone."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", False) else contextlib.nullcontext()


def emit(args: argparse.Namespace, result: dict) -> None:
    """Under --json, the command's result (the dict it already builds) on stdout."""
    if getattr(args, "json", False):
        import json

        print(json.dumps(result, indent=2, default=str))


def cmd_init(args: argparse.Namespace) -> int:
    from jobs.init import run_init
    from pipeline.configs import default_config_path

    config = Path(args.config) if args.config else default_config_path(args.dataset)
    with result_only_on_stdout(args):
        out = run_init(deployment(), args.dataset, ray_options(args), config, check_seed(args.seed), log=progress(args))
    emit(args, out)
    return 0


def _ledger():
    return deployment().ledger()


def cmd_request_add(args: argparse.Namespace) -> int:
    import json

    samples = None
    if args.samples is not None:
        samples = [s.strip() for s in args.samples.split(",")]
        if any(not s for s in samples):
            raise UserError("--samples has an empty id (two commas in a row, or a trailing comma)")
    req, created = _ledger().add(subject_id=args.subject, sample_ids=samples, reason=args.reason,
                                 idempotency_key=args.key)
    if args.json:
        print(json.dumps({**req, "created": created}, indent=2))
    else:
        state = "queued" if created else "already known"
        print(f"{req['request_id']}  {req['status']}  ({state})" +
              (f": {req['status_reason']}" if req["status"] == "rejected" else ""))
    return 0


def cmd_request_list(args: argparse.Namespace) -> int:
    import json

    rows = _ledger().list(args.status)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'request':<22} {'status':<9} {'version':>7}  {'received':<26} what")
    for r in rows:
        what = f"subject {r['subject_id']}" if r["subject_id"] else f"{len(r['sample_ids'])} samples"
        extra = f"  ({r['status_reason']})" if r["status_reason"] else ""
        print(f"{r['request_id']:<22} {r['status']:<9} {r['model_version'] or '-':>7}  {r['received_at']:<26} {what}{extra}")
    print(f"{len(rows)} request(s)")
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    from jobs.nightly import run_nightly
    from pipeline.config import read_yaml
    from pipeline.ops.nightly_config import NightlyConfig

    data: dict = {}
    if args.config is not None:
        if not args.config.strip():
            raise UserError("--config is empty: give a nightly YAML file, or leave the option out")
        data = read_yaml(args.config, "--config") or {}
    cfg = NightlyConfig.from_dict(data, args.config or "nightly config")
    if args.method is not None:
        cfg.method = args.method
    for flag, attr in (("max_ta_drop", "max_ta_drop"), ("max_ra_drop", "max_ra_drop"),
                       ("forget_margin", "forget_margin")):
        if getattr(args, flag) is not None:
            setattr(cfg.gates, attr, getattr(args, flag))
    if args.retrain_after is not None:
        cfg.retrain.after_rounds = args.retrain_after
    if args.grace_days is not None:
        cfg.grace_days = args.grace_days
    cfg.validate("the nightly's options")  # before the lock or the batch: a mistake changes nothing
    if args.abandon:
        from jobs.nightly import abandon_batch

        with result_only_on_stdout(args):
            out = abandon_batch(deployment(), cfg, log=progress(args))
        emit(args, out)
        return 0
    with result_only_on_stdout(args):
        out = run_nightly(deployment(), cfg, ray_options(args), log=progress(args))
    emit(args, out)
    if out.get("state") == "failed":
        return EXIT_GATE_FAILED
    return EXIT_UNCONFIRMED if out.get("unconfirmed") else 0


def cmd_audit(args: argparse.Namespace) -> int:
    import json

    from jobs.versions import audit_record, format_audit

    record = audit_record(_ledger(), args.request_id)
    print(json.dumps(record, indent=2) if args.json else format_audit(record))
    return 0


def _registry():
    return deployment().registry()


def cmd_rollback(args: argparse.Namespace) -> int:
    from jobs.versions import rollback

    registry = _registry()
    before = registry.champion()
    with result_only_on_stdout(args):
        to = rollback(_ledger(), registry, args.to, args.force, log=progress(args))
    emit(args, {"from": before, "to": to, "forced": bool(args.force)})
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    import json

    from jobs.versions import format_versions, version_records

    records = version_records(_registry(), _ledger())
    print(json.dumps(records, indent=2) if args.json else format_versions(records))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from jobs import serve

    home = deployment()
    if args.stop:
        return serve.stop(home)
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a TCP port")
    if not args.route_prefix.startswith("/") or any(c in args.route_prefix for c in "?#{} ") or \
            (len(args.route_prefix) > 1 and args.route_prefix.endswith("/")):
        raise UserError(f"--route-prefix {args.route_prefix!r}: a URL path starting with '/' and not ending with one, "
                        f"e.g. /unlearn")
    if args.replicas < 1 or args.max_batch_size < 1 or not 0 < args.poll_s < float("inf") \
            or not 0 < args.target_ongoing < float("inf"):
        raise UserError("--replicas and --max-batch-size must be at least 1, --poll-s and --target-ongoing positive")
    autoscaling = None
    if args.autoscale:
        try:
            lo, hi = (int(v) for v in args.autoscale.split(","))
        except ValueError:
            raise UserError(f"--autoscale {args.autoscale!r}: give MIN,MAX replicas, e.g. 1,4") from None
        if not 0 < lo <= hi:
            raise UserError("--autoscale MIN,MAX needs 0 < MIN <= MAX")
        autoscaling = {"min_replicas": lo, "max_replicas": hi, "target_ongoing_requests": args.target_ongoing}
    home.state()
    if args.detach:
        return serve.detach(home, args.argv)
    return serve.run_serve(home, args.host, args.port, args.replicas, args.poll_s, args.max_batch_size, args.address,
                           autoscaling=autoscaling, route_prefix=args.route_prefix)


def cmd_submit(args: argparse.Namespace) -> int:
    from jobs.submit import submit

    command = list(args.command_args)
    if command[:1] == ["--"]:
        command = command[1:]
    if command and (command[0] == "nightly" or not {"-h", "--help"} & set(command)):
        # A typo fails here, not on the cluster after using up tonight's nightly-YYYYMMDD id
        # (`-- nightly --help` prints the help here, for the same reason).
        build_parser().parse_args(command)
    return submit(args.address, command, args.submission_id, args.wait)


def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.demo import run_demo

    if args.people < 1 or args.workers < 1:
        raise UserError("--people and --workers must be at least 1")
    run_demo(Path(args.home), args.dataset, args.people, args.workers, args.port)
    return 0


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ray-unlearn")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import describe
    from pipeline.ops.gates import GateConfig
    from pipeline.ops.nightly_config import NightlyConfig, RetrainPolicy

    p = Parser(
        prog="unlearn",
        description="Make a trained model forget: deletion requests in a ledger, LUR and the field's\n"
                    "baselines on Ray, versions in MLflow, the champion served by Ray Serve.\n"
                    "Start with `unlearn demo`.",
        formatter_class=type("TopHelp", (HelpFormatter, argparse.RawDescriptionHelpFormatter), {}),
        epilog=ENVIRONMENT,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                   help="print the installed version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("bench", help="run methods against the retrain oracle and write results.json, report.md, plots",
                       formatter_class=HelpFormatter,
                       description="Train (or reuse) the original model and the retrain oracle, run each method, "
                                   "and compare UA/RA/TA/MIA, Avg.Gap and cost against retraining.")
    b.add_argument("--dataset", required=True, help="fashion-mnist, digits or parquet:DIR")
    b.add_argument("--forget", default="random:0.1", help="forget set: random:FRACTION, class:K, samples:IDS, subjects:IDS")
    b.add_argument("--methods", default="all", help="comma-separated method names, or all")
    b.add_argument("--seeds", default="0", help="comma-separated seeds; several give mean ± std")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--config", default=None, help="method/train config YAML (default: the shipped one for the dataset)")
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: the plain loop in this process; ray: Ray Data + Ray Train workers")
    add_ray_args(b, "the benchmark (with --engine ray)")
    b.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (CUDA when a GPU is visible)")
    b.set_defaults(func=cmd_bench)

    r = sub.add_parser("report", help="re-render report.md and plots from a bench results.json",
                       formatter_class=HelpFormatter,
                       description="Re-write DIR/report.md, DIR/metrics.png and DIR/conflict.png from DIR/results.json.")
    r.add_argument("out", help="a bench output directory")
    r.set_defaults(func=cmd_report)

    t = sub.add_parser("tune", help="grid-search each method's hyper-parameters on a validation split",
                       formatter_class=HelpFormatter,
                       description="Run every method over the same-sized grid on a validation split carved from "
                                   "train (never the test set); print and save the winners.")
    t.add_argument("--dataset", required=True, help="fashion-mnist, digits or parquet:DIR")
    t.add_argument("--forget", default="random:0.1", help="forget spec, as for bench")
    t.add_argument("--methods", default="all", help="comma-separated method names, or all")
    t.add_argument("--holdout", type=int, default=3000, help="train samples set aside as the validation split")
    t.add_argument("--subsample", type=int, default=0, help="use this many train samples (0 = all)")
    t.add_argument("--seed", type=int, default=0, help="seed of the validation problem")
    t.add_argument("--out", required=True, help="output directory (tune.json)")
    t.add_argument("--config", default=None, help="base config YAML (default: the shipped one for the dataset)")
    t.add_argument("--grid", default=None, help="grid YAML (default: <config>-grid.yaml beside the config)")
    t.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (CUDA when a GPU is visible)")
    t.set_defaults(func=cmd_tune)
    f = sub.add_parser("forget", help="run one unlearning on Ray and write the unlearned checkpoint and its metrics",
                       formatter_class=HelpFormatter,
                       description="Forget samples, subjects or a spec'd set from a model with one method on Ray Train "
                                   "workers (a local Ray when no address is given).")
    f.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, digits or parquet:DIR")
    what = f.add_mutually_exclusive_group(required=True)
    what.add_argument("--samples", help="comma-separated sample ids")
    what.add_argument("--subjects", help="comma-separated subject ids (every sample they own)")
    what.add_argument("--forget", help="a forget spec: random:F, class:K, samples:IDS, subjects:IDS")
    f.add_argument("--method", default="lur", help="unlearning method")
    f.add_argument("--from", dest="start_from", default=None,
                   help="checkpoint directory to start from (default: the MLflow champion when $UNLEARN_HOME "
                        "is set up for the dataset, else the dataset's original model)")
    f.add_argument("--config", default=None, help="method/train config YAML (default: the shipped one)")
    f.add_argument("--seed", type=int, default=0, help="seed of the run (and of random:F forget sets)")
    f.add_argument("--out", required=True, help="output directory: model/ (safetensors + card) and metrics.json")
    add_ray_args(f)
    f.set_defaults(func=cmd_forget)

    fmt = HelpFormatter
    i = sub.add_parser("init", help="ingest a dataset, train the original model on Ray, register it as v1 @champion",
                       formatter_class=fmt,
                       description="Set up $UNLEARN_HOME: the Parquet store, the ledger, MLflow (SQLite by default) "
                                   "and version 1 of the model, trained on Ray Train, as the champion.")
    i.add_argument("--dataset", required=True, help="fashion-mnist, digits or parquet:DIR")
    i.add_argument("--config", default=None, help="train/method config YAML (default: the shipped one for the dataset)")
    i.add_argument("--seed", type=int, default=0, help="training seed")
    add_ray_args(i, "training the original model")
    i.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    i.set_defaults(func=cmd_init)

    rq = sub.add_parser("request", help="queue and list deletion requests (the ledger)", formatter_class=fmt,
                        description="Deletion requests in the ledger: pending -> applied -> served -> purged, "
                                    "or rejected with a reason.")
    rsub = rq.add_subparsers(dest="request_command", required=True, metavar="ACTION")
    ra = rsub.add_parser("add", help="queue a deletion of a subject's data or of sample ids", formatter_class=fmt,
                         description="Queue a deletion request. The same request twice (same idempotency key) "
                                     "returns the first.")
    who = ra.add_mutually_exclusive_group(required=True)
    who.add_argument("--subject", help="a subject id: every sample this person owns")
    who.add_argument("--samples", help="comma-separated sample ids")
    ra.add_argument("--reason", default=None, help="free text kept with the request, e.g. 'GDPR Art. 17' (default: none)")
    ra.add_argument("--key", default=None, help="idempotency key (default: derived from the subject or the id set)")
    ra.add_argument("--json", action="store_true", help="print the request as JSON")
    ra.set_defaults(func=cmd_request_add)
    rl = rsub.add_parser("list", help="list requests", formatter_class=fmt, description="List deletion requests.")
    rl.add_argument("--status", default=None, help="only this status: pending, applied, served, purged, rejected (default: all)")
    rl.add_argument("--json", action="store_true", help="print JSON")
    rl.set_defaults(func=cmd_request_list)

    n = sub.add_parser("nightly", help="forget every pending request: unlearn on Ray, gate, register, purge",
                       formatter_class=fmt,
                       description="One batch: lock, resolve pending requests, unlearn from the champion on Ray, "
                                   "evaluate against the parent, gate, register in MLflow and move the champion, "
                                   "purge the samples, write audit records. Safe to re-run after a crash. "
                                   "Exit code 3 when a gate fails; 4 when serving did not confirm the new "
                                   "version on every replica within serve_wait_s (nothing purged; re-run once "
                                   "serving is healthy); 5 when another machine took the nightly lock over "
                                   "(this run stopped before writing more).")
    n.add_argument("--method", default=None, help="unlearning method (default: the --config file's, else "
                                                   f"{NightlyConfig.model_fields['method'].default})")
    n.add_argument("--config", default=None, help="nightly YAML: method, gates, retrain policy, grace_days (default: the built-in defaults, "
                        "spelled out in pipeline/configs/nightly.yaml)")
    n.add_argument("--max-ta-drop", type=float, default=None, help="gate: " + describe(GateConfig, "max_ta_drop"))
    n.add_argument("--max-ra-drop", type=float, default=None, help="gate: " + describe(GateConfig, "max_ra_drop"))
    n.add_argument("--forget-margin", type=float, default=None, help="gate: " + describe(GateConfig, "forget_margin"))
    n.add_argument("--retrain-after", type=int, default=None, help=describe(RetrainPolicy, "after_rounds"))
    n.add_argument("--grace-days", type=float, default=None, help=describe(NightlyConfig, "grace_days"))
    add_ray_args(n)
    n.add_argument("--abandon", action="store_true",
                   help="give up the open batch instead of finishing it: before `purged` only; a registered "
                        "version stops being champion (back to its parent) and its requests are pending again")
    n.add_argument("--json", action="store_true", help="print the night's result as JSON on stdout (progress on stderr)")
    n.set_defaults(func=cmd_nightly)

    a = sub.add_parser("audit", help="print a deletion request's audit record", formatter_class=fmt,
                       description="When the request was received, the version that first excluded it, when that "
                                   "version was served, when its samples were purged, and how the version scores "
                                   "on them.")
    a.add_argument("request_id", help="the request id (del-...)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=cmd_audit)

    rb = sub.add_parser("rollback", help="point champion at an older version (never one holding purged data, unless forced)",
                        formatter_class=fmt,
                        description="Move the champion alias back. A version that still contains the data of "
                                    "purged requests is refused unless --force, and forcing is recorded in those "
                                    "requests' audit records.")
    rb.add_argument("--to", type=int, default=None, help="version to serve (default: the champion's parent)")
    rb.add_argument("--force", action="store_true", help="allow a version that contains purged data")
    rb.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    rb.set_defaults(func=cmd_rollback)

    sv = sub.add_parser("serve", help="serve the champion on Ray Serve (predictions, deletion intake, hot swap)",
                        formatter_class=fmt,
                        description="Ray Serve app with a FastAPI ingress: POST /predict, GET /healthz, GET /model, "
                                    "POST /deletions and GET /deletions/ID (bearer token: $UNLEARN_TOKEN or "
                                    "$UNLEARN_HOME/token). Follows the MLflow champion alias with zero-downtime swaps.")
    sv.add_argument("--host", default="127.0.0.1", help="interface to listen on (loopback unless you say otherwise)")
    sv.add_argument("--port", type=int, default=8000, help="HTTP port")
    sv.add_argument("--replicas", type=int, default=1, help="model replicas (fixed; see --autoscale)")
    sv.add_argument("--autoscale", default=None, metavar="MIN,MAX",
                    help="let Ray Serve scale replicas between MIN and MAX on load instead of --replicas "
                         "(default: off)")
    sv.add_argument("--target-ongoing", type=float, default=8.0,
                    help="with --autoscale: ongoing requests per replica Serve aims for")
    sv.add_argument("--poll-s", type=float, default=1.0, help="seconds between checks of the champion alias")
    sv.add_argument("--max-batch-size", type=int, default=32, help="requests batched into one forward pass")
    sv.add_argument("--route-prefix", default="/", help="URL path the application answers under (Serve's route_prefix)")
    sv.add_argument("--address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    sv.add_argument("--detach", action="store_true", help="run in the background and return once it serves")
    sv.add_argument("--stop", action="store_true", help="stop the background server of this $UNLEARN_HOME")
    sv.set_defaults(func=cmd_serve)

    sb = sub.add_parser("submit", help="run an unlearn subcommand on a Ray cluster via the Ray Jobs API",
                        formatter_class=fmt,
                        description="Submit `unlearn <subcommand>` as a Ray job (the project travels as the working "
                                    "dir). A nightly gets the id nightly-YYYYMMDD, so a second one the same night is "
                                    "refused. --wait streams logs and exits with the job's status.")
    sb.add_argument("--address", default=None, help="Jobs API URL (default: $RAY_ADDRESS, else http://127.0.0.1:8265)")
    sb.add_argument("--wait", action="store_true", help="stream the logs and exit with the job's exit status")
    sb.add_argument("--submission-id", default=None, help="job id (default: nightly-YYYYMMDD for nightly, else Ray's)")
    sb.add_argument("command_args", nargs=argparse.REMAINDER, metavar="-- SUBCOMMAND ...",
                    help="the unlearn subcommand and its arguments, after --")
    sb.set_defaults(func=cmd_submit)

    dm = sub.add_parser("demo", help="the whole story in minutes: init, serve, delete over HTTP, nightly, purge",
                        formatter_class=fmt,
                        description="Local Ray, SQLite MLflow and ledger: train and register the original model, serve "
                                    "it, file deletion requests over HTTP, run the nightly batch, show the served "
                                    "version change and the purge. Leaves nothing running.")
    dm.add_argument("--dataset", default=None, help="fashion-mnist or digits (default: fashion-mnist when installed)")
    dm.add_argument("--home", default="./.unlearn-demo", help="the demo's own UNLEARN_HOME (wiped first)")
    dm.add_argument("--people", type=int, default=5, help="people who ask to be forgotten")
    dm.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    dm.add_argument("--port", type=int, default=8000, help="HTTP port (a free one if taken)")
    dm.set_defaults(func=cmd_demo)

    v = sub.add_parser("versions", help="list registered versions with lineage and what they contain",
                       formatter_class=fmt, description="Every registered version: parent, method, requests, metrics, "
                                                             "and whether it still contains purged data.")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_versions)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `serve --detach` re-runs itself with these
    name = " ".join(filter(None, ("unlearn", args.command, getattr(args, "request_command", None))))
    from pipeline.ops.ledger import LockLost

    try:
        return args.func(args)
    except LockLost as e:  # not a user mistake, not a bug: the other holder carries on
        print(f"{name}: stopped: {e}", file=sys.stderr)
        return EXIT_LOCK_LOST
    except UserError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # A path that is a file, no permission, a read-only or full disk: the environment, not
        # a bug. Any other OSError keeps its traceback.
        if not (isinstance(e, (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError))
                or e.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"{name}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
