"""Smoke run of the shared-gate and order-store benchmarks (sections 6 and 7 of the report)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bench import shared_gate, store


def test_the_shared_gate_bench_runs_and_writes_its_section() -> None:
    result = shared_gate.quick()
    assert [row.gate for row in result.fleet] == ["sqlite", "a gate per process"]
    assert result.fleet[0].throttled == 0  # no 429 on the shared gate
    assert result.fleet[0].short <= 1.0
    assert result.fleet[0].long <= 1.0
    assert [(s.gate, s.processes, s.orders) for s in result.storm] == [
        ("shared", 1, 10),
        ("shared", 1, 30),
        ("shared", 2, 10),
        ("shared", 2, 30),
        ("a gate per process", 2, 30),
    ]
    # Every order's first look at least reaches the CA, storm or not.
    assert all(s.during >= 1 for s in result.storm)
    lines: list[str] = []
    shared_gate.section(result, lines.append)
    assert lines[0].startswith("## 6.")
    text = "\n".join(lines)
    assert "| sqlite | 0 |" in text
    assert "| shared | 2 | 30 |" in text


@given(st.lists(st.floats(0.0, 30.0), min_size=1, max_size=60), st.sampled_from([1.0, 5.0]))
def test_busiest_counts_the_fullest_window_as_the_ca_does(
    times: list[float], seconds: float
) -> None:
    # The CA's window ending at an arrival holds the arrivals of the last ``seconds`` before
    # it, open at the far edge: the most of those over every arrival.
    brute = max(sum(1 for u in times if t - seconds < u <= t) for t in times)
    assert shared_gate.busiest(times, seconds) == brute


def test_the_store_bench_runs_and_writes_its_section(tmp_path: Path) -> None:
    urls = ["memory://", f"sqlite:///{tmp_path / 'orders.db'}"]
    results = store.run(orders=200, cost_orders=10, repeats=1, urls=urls)
    assert [r.stored for r in results] == [200, 200]
    assert all(r.claims_per_second > 0 and r.writes_per_second > 0 for r in results)
    assert all(r.cpu_ratio > 0 for r in results)
    lines: list[str] = []
    store.section(results, lines.append)
    assert lines[0].startswith("## 7.")
    assert "| sqlite | 200 |" in "\n".join(lines)
