"""The sample store: plain Parquet that anyone with pyarrow can read (a contract: users
write their data in it, and the nightly purges from it).

    sample_id: string (unique)   subject_id: string   label: int64   features: list<float32>

The input shape of one sample lives in the schema metadata under `unlearn.shape`
(JSON list); without it the features are a flat vector. Train and test are separate
tables, `train.parquet` and `test.parquet`, in one directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.datasets.split import SAMPLES_PER_SUBJECT, Split
from pipeline.errors import UserError

SHAPE_KEY = b"unlearn.shape"
SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("subject_id", pa.string()),
        ("label", pa.int64()),
        ("features", pa.list_(pa.float32())),
    ]
)


def split_to_table(split: Split) -> pa.Table:
    n, d = split.features.shape
    flat = pa.array(np.ascontiguousarray(split.features, dtype=np.float32).reshape(-1))
    features = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), flat)
    table = pa.Table.from_arrays(
        [
            pa.array(split.sample_ids.astype(str), pa.string()),
            pa.array(split.subject_ids.astype(str), pa.string()),
            pa.array(split.labels, pa.int64()),
            features,
        ],
        schema=SCHEMA,
    )
    return table.replace_schema_metadata({SHAPE_KEY: json.dumps(list(split.shape)).encode()})


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write to a temp file beside `path`, fsync, rename, fsync the directory: readers never
    see half a file, and after a power cut the new file is there (not the old one, which a
    purge must never get back: the rename is durable only once the directory is synced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_store(directory: Path, train: Split, test: Split) -> None:
    for name, split in (("train", train), ("test", test)):
        write_table_atomic(split_to_table(split), Path(directory) / f"{name}.parquet")


def table_to_split(table: pa.Table, where: str) -> Split:
    """Validate a user table against the store schema and turn it into arrays."""
    names = set(table.column_names)
    for col in ("label", "features"):
        if col not in names:
            raise UserError(f"{where}: missing column {col!r}; the store needs label (int) and features (list<float>)")
    if table.num_rows == 0:
        raise UserError(f"{where}: the table is empty")
    label_type = table.schema.field("label").type
    if not pa.types.is_integer(label_type):
        raise UserError(f"{where}: column 'label' is {label_type}, expected an integer type")
    ftype = table.schema.field("features").type
    if not (pa.types.is_list(ftype) or pa.types.is_large_list(ftype)) or not (
        pa.types.is_floating(ftype.value_type) or pa.types.is_integer(ftype.value_type)
    ):
        raise UserError(f"{where}: column 'features' is {ftype}, expected list<float32>")
    feats = table.column("features").combine_chunks()
    if feats.null_count:
        raise UserError(f"{where}: {feats.null_count} rows have null features")
    lengths = np.asarray(pc.list_value_length(feats))
    if lengths.min() != lengths.max():
        raise UserError(f"{where}: rows have different feature lengths ({lengths.min()}..{lengths.max()})")
    d = int(lengths[0])
    if d == 0:
        raise UserError(f"{where}: features are empty")
    x = feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, d)
    if not np.isfinite(x).all():
        raise UserError(f"{where}: features contain NaN or inf")
    labels_col = table.column("label")
    if labels_col.null_count:
        raise UserError(f"{where}: {labels_col.null_count} rows have a null label")
    y = labels_col.to_numpy().astype(np.int64)
    if y.min() < 0:
        raise UserError(f"{where}: labels must be 0..K-1, found {y.min()}")

    meta = table.schema.metadata or {}
    shape: tuple[int, ...] = (d,)
    if SHAPE_KEY in meta:
        shape = tuple(int(s) for s in json.loads(meta[SHAPE_KEY]))
        if int(np.prod(shape)) != d:
            raise UserError(f"{where}: shape metadata {shape} does not match {d} features per row")

    n = table.num_rows
    stem = Path(where).stem
    if "sample_id" in names:
        sids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
        if any(s is None for s in sids):
            raise UserError(f"{where}: sample_id has nulls")
        sids = sids.astype(str).astype(object)
        if len(set(sids)) != n:
            raise UserError(f"{where}: sample_id values are not unique")
    else:
        sids = np.asarray([f"{stem}-{i:06d}" for i in range(n)], dtype=object)
    if "subject_id" in names:
        subj = np.asarray([str(s) for s in table.column("subject_id").to_pylist()], dtype=object)
    else:
        subj = np.asarray([f"{stem}-subj-{i // SAMPLES_PER_SUBJECT:06d}" for i in range(n)], dtype=object)
    return Split(x, y, sids, subj, shape)


def read_store(directory: Path) -> tuple[Split, Split]:
    directory = Path(directory)
    out = []
    for name in ("train", "test"):
        path = directory / f"{name}.parquet"
        if not path.exists():
            raise UserError(f"{path} not found: a parquet dataset needs train.parquet and test.parquet in {directory}")
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{path} is not a readable Parquet file: {e}") from None
        out.append(table_to_split(table, str(path)))
    train, test = out
    if train.shape != test.shape:
        raise UserError(f"{directory}: train samples have shape {train.shape} but test samples {test.shape}")
    return train, test


def snapshot_id(sample_ids) -> str:
    """Names one state of the store's train table: a hash of its sample ids, in order."""
    import hashlib

    return hashlib.sha256("\0".join(map(str, sample_ids)).encode()).hexdigest()[:16]


class PurgeIncomplete(RuntimeError):
    """The store still holds rows it was told to delete: nothing may be marked purged."""


def verify_purged(directory: Path, sample_ids: set[str]) -> None:
    """Read back the id columns and fail if any of `sample_ids` is still in the store.
    A real check, not an `assert` (which `python -O` would drop)."""
    value_set = pa.array(sorted(sample_ids), type=pa.string())
    for name in ("train", "test"):
        ids = pq.read_table(Path(directory) / f"{name}.parquet", columns=["sample_id"]).column("sample_id")
        left = int(pc.sum(pc.is_in(ids.cast(pa.string()), value_set=value_set)).as_py() or 0)
        if left:
            raise PurgeIncomplete(f"{directory}/{name}.parquet still holds {left} of the {len(sample_ids)} samples "
                                  f"it was told to delete; nothing was marked purged: re-run `unlearn nightly`")


def purge_samples(directory: Path, sample_ids: set[str]) -> dict[str, int]:
    """Delete rows by sample id from train.parquet and test.parquet.

    Each table is rewritten without the rows into a temp file, fsynced and renamed over
    the old one, so a reader sees the old snapshot or the new one, never half of each;
    the old file is unlinked by the rename. Running it again removes nothing more.
    """
    removed = {}
    value_set = pa.array(sorted(sample_ids), type=pa.string())
    for name in ("train", "test"):
        path = Path(directory) / f"{name}.parquet"
        table = pq.read_table(path)
        hit = pc.is_in(table.column("sample_id").cast(pa.string()), value_set=value_set)
        n = int(pc.sum(hit).as_py() or 0)
        removed[name] = n
        if n:
            kept = table.filter(pc.invert(hit))
            write_table_atomic(kept.replace_schema_metadata(table.schema.metadata), path)
    return removed
