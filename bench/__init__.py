"""Benchmarks of SAC memories against raw text and full-KV reuse; run as ``python -m bench.<name>``.

Every figure is reported beside a baseline measured in the same run (ratios), never asserted.
See docs/benchmarks.md.
"""
