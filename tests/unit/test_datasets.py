import gzip

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import read_dataset, read_store, select_forget, write_store
from pipeline.datasets.readers import FASHION_MNIST_DIR, read_fashion_mnist
from pipeline.datasets.split import Split
from pipeline.errors import UserError

needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz").exists(), reason="apt-get install dataset-fashion-mnist"
)


def tiny_split(n=12, d=4, shape=None, prefix="t"):
    rng = np.random.default_rng(0)
    return Split(
        rng.random((n, d), dtype=np.float32),
        np.arange(n, dtype=np.int64) % 3,
        np.array([f"{prefix}{i}" for i in range(n)], dtype=object),
        np.array([f"p{i // 3}" for i in range(n)], dtype=object),
        shape or (d,),
    )


@needs_fashion
def test_real_fashion_mnist_header_and_counts():
    with gzip.open(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz", "rb") as f:
        header = f.read(16)
    assert header[:4] == b"\x00\x00\x08\x03"  # IDX magic: unsigned bytes, 3 dims
    assert int.from_bytes(header[4:8], "big") == 60000
    train, test = read_fashion_mnist()
    assert (len(train), len(test)) == (60000, 10000)
    assert train.shape == (1, 28, 28) and train.features.shape == (60000, 784)
    assert set(np.unique(train.labels)) == set(range(10))
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert train.labels[:5].tolist() == [9, 0, 0, 3, 0]  # the published first labels
    assert 0.0 <= train.features.min() and train.features.max() <= 1.0
    assert len(set(train.sample_ids)) == 60000


def test_truncated_idx_file_is_reported(tmp_path):
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100)
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(UserError, match="truncated"):
        read_fashion_mnist(tmp_path)


def test_missing_fashion_files_say_how_to_install(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        read_fashion_mnist(tmp_path)


def test_digits_reader():
    train, test = read_dataset("digits")
    assert len(train) + len(test) == 1797 and train.shape == (1, 8, 8)


def test_parquet_round_trip(tmp_path):
    train, test = tiny_split(shape=(1, 2, 2)), tiny_split(n=6, shape=(1, 2, 2), prefix="e")
    write_store(tmp_path, train, test)
    # The store is plain Parquet with the contract's schema.
    schema = pq.read_schema(tmp_path / "train.parquet")
    assert schema.field("features").type == pa.list_(pa.float32())
    assert schema.field("label").type == pa.int64()
    back, back_test = read_dataset(f"parquet:{tmp_path}")
    np.testing.assert_array_equal(back.features, train.features)
    np.testing.assert_array_equal(back.labels, train.labels)
    assert back.shape == (1, 2, 2) and list(back.sample_ids) == list(train.sample_ids)
    assert len(back_test) == 6


def test_user_parquet_without_ids_or_shape(tmp_path):
    table = pa.table({"label": pa.array([0, 1, 0, 1], pa.int64()),
                      "features": pa.array([[0.0, 1.0, 2.0]] * 4, pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "train.parquet")
    pq.write_table(table, tmp_path / "test.parquet")
    train, _ = read_store(tmp_path)
    assert train.shape == (3,) and len(set(train.sample_ids)) == 4


@pytest.mark.parametrize(
    "table,match",
    [
        (pa.table({"features": pa.array([[0.0]], pa.list_(pa.float32()))}), "missing column 'label'"),
        (pa.table({"label": [0], "features": pa.array([1.0], pa.float32())}), "expected list<float32>"),
        (pa.table({"label": ["a"], "features": pa.array([[1.0]], pa.list_(pa.float32()))}), "expected an integer"),
        (pa.table({"label": [0, 1], "features": pa.array([[1.0], [1.0, 2.0]], pa.list_(pa.float32()))}), "different feature lengths"),
        (pa.table({"label": [0, 1], "features": pa.array([[1.0], [float("nan")]], pa.list_(pa.float32()))}), "NaN"),
        (pa.table({"sample_id": ["a", "a"], "label": [0, 1], "features": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))}), "not unique"),
    ],
)
def test_wrong_schema_is_reported(tmp_path, table, match):
    pq.write_table(table, tmp_path / "train.parquet")
    pq.write_table(table, tmp_path / "test.parquet")
    with pytest.raises(UserError, match=match):
        read_store(tmp_path)


def test_missing_parquet_files(tmp_path):
    with pytest.raises(UserError, match="train.parquet"):
        read_dataset(f"parquet:{tmp_path}")
    (tmp_path / "train.parquet").write_text("not parquet")
    (tmp_path / "test.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="not a readable Parquet"):
        read_dataset(f"parquet:{tmp_path}")


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset"):
        read_dataset("imagenet")


def test_forget_specs():
    s = tiny_split(n=30)
    m = select_forget("random:0.1", s, seed=0)
    assert m.sum() == 3
    assert (select_forget("random:0.1", s, seed=0) == m).all()
    assert (select_forget("random:0.1", s, seed=1) != m).any()
    assert (select_forget("class:2", s) == (s.labels == 2)).all()
    assert select_forget("subjects:p0,p1", s).sum() == 6
    assert select_forget("samples:t3,t4", s).tolist()[3:5] == [True, True]


@pytest.mark.parametrize(
    "spec,match",
    [
        ("class:7", "no such class"),
        ("class:x", "integer"),
        ("random:0", "strictly between"),
        ("random:1.0", "strictly between"),
        ("random:abc", "number"),
        ("subjects:nobody", "unknown subject"),
        ("samples:", "no sample ids"),
        ("everything", "no ':'"),
        ("weird:1", "unknown forget spec"),
        ("random:0.0001", "selects no samples"),
        ("subjects:" + ",".join(f"p{i}" for i in range(10)), "whole train set"),
    ],
)
def test_bad_forget_specs(spec, match):
    with pytest.raises(UserError, match=match):
        select_forget(spec, tiny_split(n=30), seed=0)


def test_class_forgetting_drops_the_class_from_the_test_split():
    from pipeline.problem import test_split_for

    test = tiny_split(n=30)
    assert set(test_split_for("class:2", test).labels) == {0, 1}
    assert len(test_split_for("random:0.1", test)) == 30


def test_fingerprint_changes_with_the_data():
    from pipeline.problem import fingerprint

    a, b = tiny_split(), tiny_split()
    assert fingerprint(a) == fingerprint(b)
    b.features[0, 0] += 1.0
    assert fingerprint(a) != fingerprint(b)


def test_purge_removes_rows_atomically_and_is_idempotent(tmp_path):
    from pipeline.datasets.store import purge_samples, read_store, snapshot_id

    train, test = read_dataset("digits")
    write_store(tmp_path, train, test)
    gone = {train.sample_ids[0], train.sample_ids[5], test.sample_ids[1]}
    before = snapshot_id(train.sample_ids)
    assert purge_samples(tmp_path, gone) == {"train": 2, "test": 1}
    tr, te = read_store(tmp_path)
    assert not gone & set(tr.sample_ids) and not gone & set(te.sample_ids)
    assert len(tr) == len(train) - 2 and tr.shape == train.shape  # shape metadata survives the rewrite
    assert snapshot_id(tr.sample_ids) != before
    assert purge_samples(tmp_path, gone) == {"train": 0, "test": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.parquet", "train.parquet"]  # no temp left behind


def test_verify_purged_is_a_real_check(tmp_path):
    """The nightly's check after a purge: an error that `python -O` keeps."""
    from pipeline.datasets.store import PurgeIncomplete, purge_samples, verify_purged

    train, test = read_dataset("digits")
    write_store(tmp_path, train, test)
    gone = {train.sample_ids[3], test.sample_ids[2]}
    with pytest.raises(PurgeIncomplete, match="still holds 1 of the 2"):
        verify_purged(tmp_path, gone)
    purge_samples(tmp_path, gone)
    verify_purged(tmp_path, gone)
