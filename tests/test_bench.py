"""Smoke run of the benchmark suite (bench/) with tiny sizes, so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import overhead, ratelimit, scale, storm
from bench._common import summarize
from bench.report import Results, headlines, write_report


def test_summarize_gives_median_min_and_max() -> None:
    stats = summarize([3.0, 1.0, 2.0])
    assert (stats.median, stats.low, stats.high, stats.runs) == (2.0, 1.0, 3.0, 3)
    assert stats.fmt(".0f", " B") == "2 B (1–3)"
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_minimum_drain_follows_both_sliding_windows() -> None:
    limits = ((100, 5.0), (1000, 180.0))
    assert ratelimit.minimum_drain(100, limits) == 0.0
    assert ratelimit.minimum_drain(101, limits) == 5.0
    assert ratelimit.minimum_drain(2000, limits) == 225.0


def test_storm_with_the_gate_sees_fewer_requests_than_without() -> None:
    gated = storm.run_once(40, "certpoll")
    alone = storm.run_once(40, "per-order")
    assert gated.issued == alone.issued == 40
    assert gated.storm_requests < alone.storm_requests
    # One probe per Retry-After over the 10-minute storm, whatever N.
    assert gated.storm_requests <= 12


def test_every_workload_runs_and_the_report_has_every_section(tmp_path: Path) -> None:
    results = Results(
        overhead=overhead.run(attempts=10, repeats=1),
        scale=scale.run(sizes=(40, 80), cpu_attempts=10, repeats=1),
        storm=storm.run(
            sizes=(5, 10), repeats=1, big=10, big_repeats=1, thread_orders=5, thread_speed=600.0
        ),
        ratelimit=ratelimit.run(orders=60, repeats=1),
    )
    cpu = results.overhead.cpu_us
    assert set(cpu) == set(overhead.TRANSPORTS)
    assert all(set(by_kind) == {"issued", "pending"} for by_kind in cpu.values())
    assert set(cpu["loopback"]["issued"]) == set(overhead.VARIANTS)
    # The thread peer needs sockets; every other variant runs on both transports.
    assert set(cpu["in-process"]["issued"]) == set(overhead.VARIANTS) - {"threads"}
    assert all(s.median > 0 for k in cpu.values() for row in k.values() for s in row.values())
    assert set(results.overhead.layers) == set(overhead.LAYERS)
    assert all(s.median > 0 for s in results.overhead.layers.values())
    assert results.overhead.layer_ratio["bare httpx"].median == 1.0
    assert set(results.scale.bytes_per_order) == {40, 80}
    assert all(0 < s.median < 10_000 for s in results.scale.bytes_per_order.values())
    assert set(results.storm.requests[5]) == {"certpoll", "per-order", "tenacity", "threads"}
    assert results.storm.all_issued
    assert results.ratelimit.all_issued
    assert results.ratelimit.throttled["default"].high == 0
    assert len(headlines(results)) == 14
    assert set(results.scale.setup_us) == {40, 80}
    assert all(s.median > 0 for s in results.scale.setup_us.values())
    # The drain is compared at the thread peer's size, with and without Retry-After.
    assert set(results.storm.drain_ratio) == set(storm.DRAIN_CASES)
    assert all(s.median >= 1.0 for s in results.storm.drain_ratio.values())

    page = write_report(results, tmp_path, quick=True)
    text = page.read_text()
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "| Python |", "| stamina |"):
        assert heading in text
    for name in ("overhead", "scale", "storm", "ratelimit"):
        assert (tmp_path / "images" / f"bench-{name}.png").stat().st_size > 1000
