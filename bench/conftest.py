"""Benchmarks (``make bench``): pytest-benchmark, never run by ``make test``.

Each benchmark sets ``benchmark.group`` to the comparison it belongs to and
``benchmark.extra_info["role"]`` to ``"peer"`` for the baseline of that group; ``bench/report.py``
turns the JSON into the tables of BENCHMARKS.md as ratios against the peer measured in the same run.
"""
