"""Smoke run of the shared-gate and order-store benchmarks (sections 6 and 7 of the report)."""

from __future__ import annotations

from pathlib import Path

from bench import shared_gate, store


def test_the_shared_gate_bench_runs_and_writes_its_section() -> None:
    result = shared_gate.measure(processes=2, orders=60, speed=20.0, servers=False)
    assert [row.gate for row in result.fleet] == ["sqlite", "a gate per process"]
    assert result.fleet[0].throttled == 0  # no 429 on the shared gate
    lines: list[str] = []
    shared_gate.section(result, lines.append)
    assert lines[0].startswith("## 6.")
    assert "| sqlite | 0 |" in "\n".join(lines)


def test_the_store_bench_runs_and_writes_its_section(tmp_path: Path) -> None:
    urls = ["memory://", f"sqlite:///{tmp_path / 'orders.db'}"]
    results = store.run(orders=200, cost_orders=10, urls=urls)
    assert [r.stored for r in results] == [200, 200]
    assert all(r.claims_per_second > 0 and r.writes_per_second > 0 for r in results)
    assert all(r.cpu_ratio > 0 for r in results)
    lines: list[str] = []
    store.section(results, lines.append)
    assert lines[0].startswith("## 7.")
    assert "| sqlite | 200 |" in "\n".join(lines)
