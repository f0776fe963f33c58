"""What a nightly batch measures and shows: the evaluation against the parent version
and the plots logged with its MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.metrics import accuracy, mia_classifier, mia_score, predict_logits, true_class_confidence
from pipeline.train import to_tensors


def evaluate_batch(new: nn.Module, parent: nn.Module, train, test, resolved: dict[str, list[str]],
                   seed: int = 0) -> dict[str, Any]:
    """UA/RA/TA/MIA of the new version and RA/TA/UA/MIA of its parent on the same split,
    plus forget accuracy and MIA-Efficacy per request (on that request's samples).

    `train` is the store's train split before the purge; the forget set is the union of
    the requests' samples and retain is everything else in it."""
    x, y = to_tensors(train)
    index = {s: i for i, s in enumerate(train.sample_ids.tolist())}
    forget_idx = np.array(sorted({index[s] for ids in resolved.values() for s in ids}), dtype=np.int64)
    mask = np.zeros(len(train), dtype=bool)
    mask[forget_idx] = True
    m = torch.from_numpy(mask)
    tx, ty = to_tensors(test)
    out: dict[str, Any] = {"n_forget": int(mask.sum()), "n_retain": int((~mask).sum()), "n_test": len(ty)}
    for name, model in (("new", new), ("parent", parent)):
        logits = predict_logits(model, x)
        test_logits = predict_logits(model, tx)
        conf = true_class_confidence(logits, y)
        clf = mia_classifier(conf[~mask], true_class_confidence(test_logits, ty), seed=seed)
        # UA and MIA need a forget set: a retrain that only forgets purged requests again
        # (their samples are gone from the store) has none, and they are None
        block = {"UA": 100.0 - accuracy(logits[m], y[m]) if mask.any() else None, "RA": accuracy(logits[~m], y[~m]),
                 "TA": accuracy(test_logits, ty), "MIA": mia_score(clf, conf[mask]) if mask.any() else None}
        per = {}
        for rid, ids in resolved.items():
            if not ids:
                continue
            idx = torch.tensor([index[s] for s in ids])
            per[rid] = {"forget_accuracy": accuracy(logits[idx], y[idx]), "mia": mia_score(clf, conf[idx.numpy()]),
                        "n_samples": len(ids)}
        block["per_request"] = per
        block["weights_finite"] = bool(all(torch.isfinite(p).all() for p in model.state_dict().values()
                                           if p.is_floating_point()))
        out[name] = block
    return out


def plot_batch(evaluation: dict[str, Any], conflict: list, out: Path) -> list[Path]:
    """metrics.png (parent vs new), per_request.png (forget accuracy per request vs TA),
    conflict.png (cos(grad L_u, grad L_r) over the run's steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    keys = ["UA", "RA", "TA", "MIA"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    w = 0.38
    xs = np.arange(len(keys))
    for i, (name, color) in enumerate((("parent", "#999999"), ("new", "#1f77b4"))):
        vals = [np.nan if evaluation[name][k] is None else evaluation[name][k] for k in keys]
        bars = ax.bar(xs + (i - 0.5) * w, vals, w, label=f"{name}", color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(xs, keys)
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    ax.set_title(f"parent vs new version ({evaluation['n_forget']} samples forgotten)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out / "metrics.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    per = evaluation["new"]["per_request"]
    if per:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        rids = list(per)
        ax.bar(range(len(rids)), [per[r]["forget_accuracy"] for r in rids], color="#1f77b4", label="new")
        ax.scatter(range(len(rids)), [evaluation["parent"]["per_request"][r]["forget_accuracy"] for r in rids],
                   color="#999999", zorder=3, label="parent", s=12)
        ax.axhline(evaluation["new"]["TA"], color="k", ls="--", lw=1, label="TA (new)")
        ax.set_xticks(range(len(rids)), [r[-6:] for r in rids], rotation=90, fontsize=6)
        ax.set_ylabel("forget accuracy %")
        ax.set_ylim(0, 105)
        ax.set_title("forget accuracy per request")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / "per_request.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    if conflict:
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        steps, cos = zip(*[(c[0], c[1]) for c in conflict])
        ax.plot(steps, cos, marker=".", lw=1)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("cos(grad L_u, grad L_r)")
        ax.set_title("gradient conflict (negative: forget and retain pull apart)")
        fig.tight_layout()
        paths.append(out / "conflict.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
