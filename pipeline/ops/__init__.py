"""The operations wing: one deployment's records, shared with `serving/` and `jobs/`.

    home.py      $UNLEARN_HOME: where a deployment keeps its state, and its stores
    ledger.py    deletion requests, batches, audit events, the nightly lock (SQLAlchemy)
    registry.py  MLflow: runs, model versions, the `champion` alias
    lineage.py   the typed record of one model version, written to and read from its tags
    gates.py     quality and privacy gates a new version must pass
    nightly_config.py  the nightly batch's typed config (gates, retrain policy, grace period)

These are contracts: a renamed tag or column changes what a running deployment reads.
The core (`pipeline/` top level) never imports this wing.
"""
