"""How fast is it? Scripts that measure keras-mixer and print one JSON line per measurement.

Run each as a module from the repository root, e.g. `python -m benchmarks.train_throughput`;
`--quick` runs a tiny config once (the smoke test in tests/test_benchmarks.py).
Results: docs/benchmarks.md.
"""
