"""``python -m bench [--quick] [--out DIR]``: run every workload, write DIR/benchmarks.md."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import overhead, ratelimit, scale, shared_gate, store, storm
from .report import Results, write_report


def run_all(*, quick: bool) -> Results:
    """Every workload; ``quick`` uses tiny sizes (the smoke test's)."""
    started = time.monotonic()
    if quick:
        results = Results(
            overhead=overhead.run(attempts=20, repeats=3),
            scale=scale.run(sizes=(200, 400), cpu_attempts=50, repeats=3),
            storm=storm.run(
                sizes=(10, 30),
                repeats=3,
                big=30,
                big_repeats=3,
                thread_orders=10,
                thread_speed=400.0,
            ),
            ratelimit=ratelimit.run(orders=120, repeats=3),
            shared_gate=shared_gate.quick(),
            store=store.run(orders=300, cost_orders=20, repeats=1, urls=["memory://"]),
        )
    else:
        results = Results(
            overhead=overhead.run(),
            scale=scale.run(),
            storm=storm.run(),
            ratelimit=ratelimit.run(),
            shared_gate=shared_gate.measure(),
            store=store.run(),
        )
    results.seconds = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="default: docs")
    args = parser.parse_args(argv)
    results = run_all(quick=args.quick)
    path = write_report(results, args.out, quick=args.quick)
    print(f"wrote {path} in {results.seconds:.0f} s")


if __name__ == "__main__":
    main()
