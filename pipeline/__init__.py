"""The unlearning core: data, models, methods, metrics and the plain-PyTorch loop.

Nothing in this package imports Ray or MLflow except the trainer glue added with the
distributed engine; methods, metrics and models are unit-testable in milliseconds.
"""
