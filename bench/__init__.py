"""Benchmarks: scripts that print figures; results are recorded in bench/RESULTS.md."""
