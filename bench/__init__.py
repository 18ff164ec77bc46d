"""Benchmarks: ratios against a bare app measured side by side in one run (see docs/performance.md)."""
