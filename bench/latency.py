"""A runner a round trip away from PostgreSQL: its rate on short texts with and without 2 ms added.

One runner scores a batch of short texts (where claiming and committing
weigh most against scoring) three ways in the same run: connected straight
to the server's socket; through the delaying proxy with no delay (what the
proxy itself costs); and through it with 1 ms each way, 2 ms per round trip
(``bench.delay_proxy``: netem is not available here). The upload goes
straight to the server every time; only the runner is far away.

``python -m bench.latency [--rows N] [--repeat R]`` runs it alone.
"""

from __future__ import annotations

import argparse
import statistics

from bench import Row
from bench.ceiling import timed_batch
from bench.data import texts as make_texts
from bench.delay_proxy import delaying_proxy, unix_socket_target, via_proxy
from bench.e2e import _csv
from bench.service import cluster


def run(rows: int, repeat: int = 3, delay_ms: float = 1.0) -> dict[str, float]:
    body = _csv(make_texts("short", rows, seed=13))
    rates: dict[str, list[float]] = {"direct": [], "proxy": [], "delayed": []}
    with cluster() as url:
        target = unix_socket_target(url)
        with delaying_proxy(target, 0.0) as plain, delaying_proxy(target, delay_ms / 1e3) as slow:
            for _ in range(repeat):  # interleaved, so drift in the machine's load hits all three alike
                for name, runner_url in (
                    ("direct", url),
                    ("proxy", via_proxy(url, plain)),
                    ("delayed", via_proxy(url, slow)),
                ):
                    run = timed_batch(url, body, 1, runner_url=runner_url)
                    rates[name].append(rows / (run["seconds"] - run["upload_seconds"]))
    result = {name: statistics.median(values) for name, values in rates.items()}
    result.update(rows=rows, round_trip_ms=2 * delay_ms)
    return result


def rows(lat: dict[str, float]) -> list[Row]:
    """``make bench``'s row for :func:`run`."""
    return [
        (
            f"1 runner, {lat['rows']:,.0f} short texts, {lat['round_trip_ms']:g} ms added to every round "
            "trip to PostgreSQL (a delaying TCP proxy, `bench/delay_proxy.py`)",
            f"the same runner connected straight to PostgreSQL: {lat['direct']:,.0f} rows/s "
            f"(through the proxy with no delay: {lat['proxy']:,.0f} rows/s)",
            f"**{lat['delayed'] / lat['direct']:.2f}×** ({lat['delayed']:,.0f} rows/s; "
            f"{lat['delayed'] / lat['proxy']:.2f}× the undelayed proxy)",
            "≥ 0.85×",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(run(args.rows, args.repeat))


if __name__ == "__main__":
    main()
