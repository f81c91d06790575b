"""Benchmark suite: ``python -m benchmarks [--quick] [--only volrend,...] [--out results/x.json]``."""
