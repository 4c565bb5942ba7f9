"""Benchmarks (``make bench``): figures as ratios against baselines measured in the same run."""

#: One row of ``make bench``'s table: the figure, its baseline (same run), the result, the target.
Row = tuple[str, str, str, str]
