"""Datasets: readers for real data, the Parquet sample store, forget-set specs.

    split.py    `Split`: one table of samples in memory
    readers.py  the built-in datasets (Fashion-MNIST, digits), read from files on this disk
    store.py    the Parquet sample store: schema, read, write, purge
    catalog.py  a dataset name -> its store directory, ingested on first use
    forget.py   forget-set specs (random:F, class:K, samples:IDS, subjects:IDS)
"""

from pipeline.datasets.catalog import open_store, read_dataset, store_dir
from pipeline.datasets.forget import select_forget
from pipeline.datasets.split import Split
from pipeline.datasets.store import read_store, write_store

__all__ = ["Split", "open_store", "read_dataset", "read_store", "select_forget", "store_dir", "write_store"]
