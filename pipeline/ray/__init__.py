"""The Ray wing: where the pure core runs on a cluster.

    cluster.py  join a cluster (or start a local one); check an address in seconds
    data.py     Ray Data: read the Parquet store, split forget / retain, shards to tensors
    train.py    Ray Train: the core's loops (`pipeline.unlearn`, `pipeline.train`) on N workers

Only this wing (and `serving/`, `jobs/`) imports Ray; the core never does.
"""
