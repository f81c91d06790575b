"""Benchmark suite: ``python -m benchmarks [--quick | --scale tiny|one|all] [--only volrend,...] [--out x.json]``,
or the same cases under pytest-benchmark: ``pytest benchmarks/ --benchmark-only``."""
