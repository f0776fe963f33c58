"""Datasets: readers for real data, the Parquet sample store, forget-set specs."""

from pipeline.datasets.forget import select_forget
from pipeline.datasets.readers import Split, read_dataset
from pipeline.datasets.store import read_store, write_store

__all__ = ["Split", "read_dataset", "read_store", "select_forget", "write_store"]
