"""Serendip's benchmarks: learning quality on simulated traffic and core speed.

Run them all with ``make bench`` (``python -m benchmarks``); results go to
``benchmarks/results/*.json`` and the summary to ``docs/benchmarks.md``.
"""
