"""Entry points: the `unlearn` CLI and the benchmark harness."""
