"""Ray Data at the edge: read the Parquet sample store, split it into forget and retain
by sample ids, and turn a worker's shard into tensors for the plain loop.

The store may be a local directory or any pyarrow filesystem URI (s3://, gs://,
hdfs://): `train.parquet` inside it is read by Ray Data's parallel readers. The forget
ids are resolved on the driver (pipeline.datasets.select_forget).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch


def _path(store: str, table: str) -> str:
    return f"{str(store).rstrip('/')}/{table}.parquet"


def forget_retain(store: str, forget_ids: list[str], pad_to_multiple: int = 1):
    """Two Ray Datasets: the forget rows and the retain rows of the train table.

    When the forget set will be sharded over N workers, it is padded with duplicates of
    its first rows to a multiple of N: Ray Train's equal split would otherwise drop the
    remainder, and a dropped forget row is a deletion never carried out.
    """
    import ray

    ids = pa.array(sorted(set(forget_ids)), type=pa.string())

    def keep(forget: bool):
        def fn(batch: pa.Table) -> pa.Table:
            hit = pc.is_in(batch.column("sample_id").cast(pa.string()), value_set=ids)
            return batch.filter(hit if forget else pc.invert(hit))
        return fn

    ds = ray.data.read_parquet(_path(store, "train"))
    forget = ds.map_batches(keep(True), batch_format="pyarrow", batch_size=None)
    retain = ds.map_batches(keep(False), batch_format="pyarrow", batch_size=None)
    return pad_to_multiple_of(forget, len(ids), pad_to_multiple), retain


def pad_to_multiple_of(ds, rows: int, n: int):
    """`ds` (of `rows` rows) with its first `(-rows) % n` rows appended again.

    Ray Train's equal split hands every worker `rows // n` rows and silently drops the
    rest. A dropped forget row is a deletion never carried out; a dropped train row makes
    a model trained on less than its card says. So the split gets a multiple of N: at most
    N - 1 rows are seen twice an epoch (for 1438 rows on 3 workers, 2 rows, 0.14 %), the
    documented cost of splitting, and none is lost."""
    pad = (-rows) % n
    return ds.union(ds.limit(pad)) if pad else ds


def shard_to_tensors(shard, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Read one worker's shard (a Ray DataIterator) into memory, ordered by sample id.

    Ordering by id makes a run independent of the order Ray delivers blocks in, so one
    worker reproduces the local loop exactly. Each worker holds only its own shard.
    """
    xs, ys, sids = [], [], []
    for batch in shard.iter_batches(batch_size=8192, batch_format="pyarrow"):
        feats = batch.column("features").combine_chunks()
        d = int(np.prod(shape))
        xs.append(feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, d))
        ys.append(batch.column("label").to_numpy().astype(np.int64))
        sids.append(np.asarray(batch.column("sample_id").to_pylist(), dtype=object))
    if not ys:
        return torch.empty(0, *shape, device=device), torch.empty(0, dtype=torch.long, device=device), np.array([], object)
    x, y, s = np.concatenate(xs), np.concatenate(ys), np.concatenate(sids)
    order = np.argsort(s.astype(str), kind="stable")
    x_t = torch.from_numpy(x[order]).reshape(len(order), *shape).to(device)
    return x_t, torch.from_numpy(y[order]).to(device), s[order]
