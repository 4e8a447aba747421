"""Benchmarks that print their numbers (not part of the test suite); `python -m benchmarks` runs
the end-to-end comparison (``benchmarks.e2e``)."""
