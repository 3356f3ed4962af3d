"""`make bench`: every benchmark in this package with its full settings, one after another.

Each benchmark module has a `main(argv)`; add yours to BENCHMARKS.
"""

from __future__ import annotations

import sys

from bench import events_e2e_bench, ledger_bench, live_bench, scrape_bench, scrape_size_bench

BENCHMARKS = (
    ("Scrape latency", scrape_bench.main),
    ("Scrape cost by cluster size", scrape_size_bench.main),
    ("Task ledger", ledger_bench.main),
    ("Events end to end", events_e2e_bench.main),
    ("Live cluster", live_bench.main),
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for title, run in BENCHMARKS:
        print(f"== {title}")
        run(args)


if __name__ == "__main__":
    main()
