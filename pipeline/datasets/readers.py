"""Readers that turn a named dataset into two `Split`s (train, test).

Built-ins are real data that ship on this disk: Fashion-MNIST from the Debian package
`dataset-fashion-mnist` (gzipped IDX files) and scikit-learn's `digits`. User data
(`parquet:DIR`) is read by `store.py`; `catalog.py` maps a dataset name to either.
Nothing downloads.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from pipeline.datasets.split import SAMPLES_PER_SUBJECT, Split
from pipeline.errors import UserError

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def _ids(prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    samples = np.char.add(f"{prefix}-", np.char.zfill(idx.astype(str), 6))
    subjects = np.char.add(f"{prefix}-subj-", np.char.zfill((idx // SAMPLES_PER_SUBJECT).astype(str), 6))
    return samples.astype(object), subjects.astype(object)


def _read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: a big-endian header of dims, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise UserError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path}: header says {dims} but holds {body.size} values; the file is truncated")
    return body.reshape(dims)


def read_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> tuple[Split, Split]:
    root = Path(root)
    splits = []
    for prefix, name in (("train", "train"), ("t10k", "test")):
        files = [root / f"{prefix}-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1))]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise UserError(
                f"Fashion-MNIST files not found: {', '.join(missing)}. "
                "Install them with `apt-get install dataset-fashion-mnist` or set FASHION_MNIST_DIR."
            )
        images, labels = _read_idx(files[0]), _read_idx(files[1])
        if len(images) != len(labels):
            raise UserError(f"{root}: {len(images)} images but {len(labels)} labels")
        x = (images.reshape(len(images), -1).astype(np.float32)) / 255.0
        sids, subj = _ids(f"fm-{name}", len(labels))
        splits.append(Split(x, labels.astype(np.int64), sids, subj, (1, 28, 28)))
    return splits[0], splits[1]


def read_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's 8x8 digits (1797 images), split once with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    out = []
    for name, idx in (("train", tr), ("test", te)):
        sids, subj = _ids(f"digits-{name}", len(idx))
        out.append(Split(x[idx], y[idx], sids, subj, (1, 8, 8)))
    return out[0], out[1]


BUILTIN = {"fashion-mnist": read_fashion_mnist, "digits": read_digits}
