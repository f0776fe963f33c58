"""Unlearning: a pure PyTorch core at the top of this package, and two walled wings.

    the core     methods/, unlearn.py (the loop), train.py, metrics.py, models.py,
                 loop_state.py, collective.py, config.py, configs/, datasets/, problem.py
    ray/         the Ray wing: Ray Data, Ray Train, cluster connection
    ops/         the operations wing: home, ledger (SQLAlchemy), registry (MLflow),
                 lineage, gates, the nightly's config

The core imports no Ray, MLflow, SQLAlchemy or web framework (not even inside a
function) and neither wing; the wings do not import each other. tests/unit/test_layers.py
holds the code to this. docs/internals.md has the map, a few lines per room.
"""
