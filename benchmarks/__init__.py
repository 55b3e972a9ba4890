"""Benchmarks: ``python -m benchmarks [name ...]`` prints a table and writes JSON to benchmarks/results/."""
