"""Benchmarks: scenarios that print figures and ratios (`python -m bench`), never pass/fail."""
