"""The shared gate's backends: what one admission costs, on loopback.

``python -m bench.shared_gate [--admissions N]`` starts a PostgreSQL and a Redis server as
the test suite does (tests/realservers.py), and times ``admit`` + ``report`` (one request's
two steps) on each backend, one after another on one key with room in its windows:
median and p99, in milliseconds. The goal: one round trip on Redis (one ``EVALSHA``), one
transaction on PostgreSQL.

Not part of ``make bench`` (it needs the servers); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from certpoll._backends.gate import Admitted, GateRules, gate_key, open_gate_backend
from tests.realservers import running_postgres, running_redis

#: DigiCert's documented windows, with room: every admission is let through.
RULES = GateRules(limits=((100_000, 5.0), (1_000_000, 180.0)), pace=False)
KEY = gate_key("digicert", "bench-shared-gate")


async def _cost(url: str, admissions: int) -> tuple[list[float], list[float]]:
    """Seconds per ``admit`` and per ``report``."""
    backend = open_gate_backend(url)
    admits: list[float] = []
    reports: list[float] = []
    try:
        for _ in range(admissions + 20):  # the first 20 warm up connections and scripts
            started = time.perf_counter()
            decision = await backend.admit(KEY, RULES)
            admitted = time.perf_counter()
            assert isinstance(decision, Admitted)
            await backend.report(KEY, RULES, ticket=decision.ticket)
            admits.append(admitted - started)
            reports.append(time.perf_counter() - admitted)
    finally:
        await backend.aclose()
    return admits[20:], reports[20:]


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def run(admissions: int = 2000) -> list[tuple[str, float, float, float, float]]:
    """Per backend: name, admit median and p99, report median and p99 (milliseconds)."""
    rows = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{folder}/gate.db",
            "redis": stack.enter_context(running_redis()),
            "postgresql": stack.enter_context(running_postgres()),
        }
        for name, url in urls.items():
            admits, reports = asyncio.run(_cost(url, admissions))
            rows.append(
                (
                    name,
                    statistics.median(admits) * 1e3,
                    _p99(admits) * 1e3,
                    statistics.median(reports) * 1e3,
                    _p99(reports) * 1e3,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_gate", description=__doc__)
    parser.add_argument("--admissions", type=int, default=2000)
    args = parser.parse_args(argv)
    print("| backend | admit median | admit p99 | report median | report p99 |")
    print("|---|---|---|---|---|")
    for name, admit, admit99, report, report99 in run(args.admissions):
        print(
            f"| {name} | {admit:.3f} ms | {admit99:.3f} ms | {report:.3f} ms | {report99:.3f} ms |"
        )


if __name__ == "__main__":
    main()
