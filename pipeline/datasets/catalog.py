"""Dataset names and where their sample store lives.

    fashion-mnist, digits   built-in: read once, then kept as Parquet in ROOT/datasets/NAME
    parquet:DIR             the user's own store, read where it is

`store_dir` is the one place that says where a dataset's store is; `open_store` reads it,
ingesting a built-in dataset on first use.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets.readers import BUILTIN
from pipeline.datasets.split import Split
from pipeline.datasets.store import read_store, write_store
from pipeline.errors import UserError

PARQUET = "parquet:"


def check_name(name: str) -> None:
    if name not in BUILTIN and not name.startswith(PARQUET):
        raise UserError(f"unknown dataset {name!r}: use {', '.join(BUILTIN)} or parquet:DIR")


def read_dataset(name: str) -> tuple[Split, Split]:
    """`fashion-mnist`, `digits` or `parquet:DIR` -> (train, test), straight from the source."""
    check_name(name)
    if name.startswith(PARQUET):
        return read_store(Path(name[len(PARQUET):]))
    return BUILTIN[name]()


def store_dir(dataset: str, root: str | Path) -> Path:
    """The directory holding `train.parquet` and `test.parquet` for `dataset` under `root`
    (a deployment's $UNLEARN_HOME, or the benchmark's cache)."""
    check_name(dataset)
    if dataset.startswith(PARQUET):
        return Path(dataset[len(PARQUET):])
    return Path(root) / "datasets" / dataset


def open_store(dataset: str, root: str | Path) -> tuple[Split, Split]:
    """Read the dataset through its Parquet sample store, ingesting a built-in one on first use."""
    directory = store_dir(dataset, root)
    if not dataset.startswith(PARQUET) and not (directory / "train.parquet").exists():
        train, test = read_dataset(dataset)
        write_store(directory, train, test)
    return read_store(directory)
