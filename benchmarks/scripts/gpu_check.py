"""GPU check: ResNet-18 on synthetic CIFAR-shaped tensors, samples/s of the unlearning
loop on 1 GPU (fp32 and bf16 autocast), and on Ray Train with 1 and N GPU workers
when Ray is installed.

    python benchmarks/scripts/gpu_check.py [--steps 60] [--method lur]

Synthetic data on purpose: the check measures the machinery (device placement,
autocast, NCCL all-reduce), not accuracy, and needs nothing downloaded.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.datasets.split import Split  # noqa: E402
from pipeline.datasets.store import write_store  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.unlearn import (  # noqa: E402
    LoopHooks,
    UnlearnConfig,  # noqa: E402
    unlearn,
)


def synthetic(n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    ids = np.asarray([f"s-{i:07d}" for i in range(n)], dtype=object)
    return Split(rng.standard_normal((n, 3 * 32 * 32), dtype=np.float32), rng.integers(0, 10, n),
                 ids, np.asarray([f"p-{i // 3:07d}" for i in range(n)], dtype=object), (3, 32, 32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="loop steps per measurement")
    ap.add_argument("--method", default="lur")
    ap.add_argument("--forget-batch", type=int, default=256)
    ap.add_argument("--retain-batch", type=int, default=512)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible: this check needs one")
    dev = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}")

    n_forget = args.steps * args.forget_batch
    train = synthetic(n_forget * 4)
    cfg = UnlearnConfig(method=args.method, method_kwargs={"order": "second"} if args.method == "lur" else {},
                        epochs=1, lr=1e-3, optimizer="adam", forget_batch=args.forget_batch,
                        retain_batch=args.retain_batch, conflict_every=0)
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), 10)
    x = torch.from_numpy(train.features).reshape(-1, 3, 32, 32).to(dev)
    y = torch.from_numpy(train.labels).to(dev)
    forget, retain = (x[:n_forget], y[:n_forget]), (x[n_forget:], y[n_forget:])
    per_step = args.forget_batch + args.retain_batch
    rows = []
    for name, dtype in (("local loop, fp32", None), ("local loop, bf16 autocast", torch.bfloat16)):
        m = copy.deepcopy(model).to(dev)
        unlearn(m, (forget[0][:2 * args.forget_batch], forget[1][:2 * args.forget_batch]), retain, cfg,
                hooks=LoopHooks(autocast=dtype))  # warm-up: cuDNN autotune, allocator
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = unlearn(m, forget, retain, cfg, hooks=LoopHooks(autocast=dtype))
        torch.cuda.synchronize()
        rows.append((name, r.steps * per_step / (time.perf_counter() - t), 0.0))

    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray is not installed here: the Ray Train GPU path is unmeasured")
    else:
        from pipeline.ray.cluster import connect
        from pipeline.ray.train import RayOptions, unlearn_on_ray

        connect(None)
        home = Path(tempfile.mkdtemp())
        write_store(home / "store", train, synthetic(100, 1))
        card = {"arch": "resnet18", "model_kwargs": {}, "input_shape": [3, 32, 32], "num_classes": 10}
        ids = train.sample_ids[:n_forget].tolist()
        for n in sorted({1, torch.cuda.device_count()}):
            _, s = unlearn_on_ray(copy.deepcopy(model), card, str(home / "store"), ids, cfg,
                                  RayOptions(workers=n, gpu=True, storage_path=str(home / "runs")), home)
            rows.append((f"ray train, {n} GPU worker(s), fp32", s["steps"] * per_step / s["seconds"],
                         s["wall_seconds"] - s["seconds"]))

    print(f"\nResNet-18, {args.method}, {args.steps} steps of {args.forget_batch}+{args.retain_batch} samples\n")
    print("| engine | samples/s | start-up s |\n|---|---|---|")
    for name, sps, start in rows:
        print(f"| {name} | {sps:.0f} | {start:.1f} |")


if __name__ == "__main__":
    main()
