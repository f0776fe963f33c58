"""Forget-set specs: which train samples a run must forget.

    random:0.1          10 % of train, drawn with the run's seed
    class:3             every train sample of class 3
    samples:ID,ID,...   these sample ids
    subjects:ID,...     every sample of these people (the unit of a deletion request)
"""

from __future__ import annotations

import numpy as np

from pipeline.datasets.split import Split
from pipeline.errors import UserError


def _ids(arg: str, what: str) -> set[str]:
    ids = [s.strip() for s in arg.split(",") if s.strip()]
    if not ids:
        raise UserError(f"no {what} ids given: write {what}s:ID,ID,...")
    return set(ids)


def select_forget(spec: str, train: Split, seed: int = 0) -> np.ndarray:
    """Return a boolean mask over `train` marking the forget set."""
    kind, sep, arg = spec.partition(":")
    if not sep:
        raise UserError(f"forget spec {spec!r} has no ':'; use random:0.1, class:K, samples:IDS or subjects:IDS")
    n = len(train)
    if kind == "random":
        try:
            frac = float(arg)
        except ValueError:
            raise UserError(f"random:{arg}: the fraction must be a number like 0.1") from None
        if not 0.0 < frac < 1.0:
            raise UserError(f"random:{arg}: the fraction must lie strictly between 0 and 1")
        k = int(round(frac * n))
        mask = np.zeros(n, dtype=bool)
        mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    elif kind == "class":
        try:
            k = int(arg)
        except ValueError:
            raise UserError(f"class:{arg}: the class must be an integer label") from None
        classes = np.unique(train.labels)
        if k not in classes:
            raise UserError(f"class:{k}: no such class; the train set has classes {classes.min()}..{classes.max()}")
        mask = train.labels == k
    elif kind == "samples":
        wanted = _ids(arg, "sample")
        mask = np.isin(train.sample_ids, list(wanted))
        unknown = wanted - set(train.sample_ids[mask])
        if unknown:
            raise UserError(f"unknown sample ids: {', '.join(sorted(unknown)[:5])}{' ...' if len(unknown) > 5 else ''}")
    elif kind == "subjects":
        wanted = _ids(arg, "subject")
        mask = np.isin(train.subject_ids, list(wanted))
        unknown = wanted - set(train.subject_ids[mask])
        if unknown:
            raise UserError(f"unknown subject ids: {', '.join(sorted(unknown)[:5])}{' ...' if len(unknown) > 5 else ''}")
    else:
        raise UserError(f"unknown forget spec kind {kind!r}; use random, class, samples or subjects")

    if not mask.any():
        raise UserError(f"forget spec {spec!r} selects no samples")
    if mask.all():
        raise UserError(f"forget spec {spec!r} covers the whole train set: nothing would be retained")
    if len(np.unique(train.labels[~mask])) < 2:
        raise UserError(f"forget spec {spec!r} leaves fewer than two classes to retain")
    return mask
