"""The parts of the command not covered end to end: displays, the live demo, serve-sim.

Every test is async (the blocking ones run in a thread) so that all share the plugin's loop.
"""

from __future__ import annotations

import asyncio
import io
import socket
from datetime import UTC, datetime

import httpx
import pytest

from certpoll import Certificate, ConfigError, OrderState, OrderStatus, _cli, _demo
from certpoll.testing import SimulatedCA

ISSUED = OrderStatus(
    ca="digicert",
    order_id="7",
    state=OrderState.ISSUED,
    certificate=Certificate(
        pem="-----BEGIN CERTIFICATE-----\n",
        chain_pem="",
        serial="1234",
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
        ca_certificate_id="99",
    ),
)
PENDING = OrderStatus(
    ca="digicert", order_id="8", state=OrderState.PENDING, message="order 8 is\npending"
)


async def test_the_live_status_display_ends_with_one_line_per_order() -> None:
    out = io.StringIO()
    display = _cli._Display(["7", "8"], json_out=False, live=True)
    display._out = out
    display.start()
    display.update(ISSUED)
    display.update(PENDING)
    display.stop()
    display.finish([ISSUED, PENDING], {"7": ["/tmp/x.pem", "/tmp/x.chain.pem"]})
    lines = out.getvalue().splitlines()[-3:]
    assert lines[0] == "digicert 7  issued  serial 1234  valid until 2027-01-01"
    assert lines[1] == "digicert 8  still pending  order 8 is pending"
    assert lines[2] == "wrote /tmp/x.pem, /tmp/x.chain.pem"


async def test_the_demo_with_the_live_table() -> None:
    out = io.StringIO()
    result = await asyncio.to_thread(
        _demo.run_demo, orders=8, seed=3, speed=20000, out=out, live=True
    )
    assert sum(t.accounted for t in result.tallies) == 8
    assert "8 renewals" in out.getvalue()


@pytest.mark.parametrize("raw", ["many", "0"])
async def test_demo_orders_from_env_refuses_nonsense(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("CERTPOLL_DEMO_ORDERS", raw)
    with pytest.raises(ConfigError, match="CERTPOLL_DEMO_ORDERS"):
        _demo.demo_orders_from_env()


async def test_demo_orders_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTPOLL_DEMO_ORDERS", "12")
    assert _demo.demo_orders_from_env() == 12


async def test_serve_sim_announces_working_exports(capsys: pytest.CaptureFixture[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = asyncio.create_task(_cli._run_server(SimulatedCA(), sock))
    try:
        for _ in range(500):
            out = capsys.readouterr().out
            if out:
                break
            await asyncio.sleep(0.01)
        base_url = next(
            line.split("=", 1)[1]
            for line in out.splitlines()
            if line.startswith("export CERTPOLL_DIGICERT_BASE_URL=")
        )
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{base_url}/order/certificate/1")
        assert answer.status_code in (401, 403, 404)
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        sock.close()


async def test_serve_sim_refuses_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        assert await asyncio.to_thread(_cli.main, ["serve-sim", "--port", str(port)]) == 1
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "hint: choose another --port" in err


async def test_the_same_seed_gives_the_same_demo_and_certpoll_causes_no_429() -> None:
    def once(seed: int) -> _demo.DemoResult:
        return _demo.run_demo(orders=60, seed=seed, speed=20000, out=io.StringIO(), live=False)

    first, second = await asyncio.to_thread(once, 5), await asyncio.to_thread(once, 5)
    assert first.tallies == second.tallies
    assert (first.ca_requests, first.ca_throttled, first.simulated_seconds) == (
        second.ca_requests,
        second.ca_throttled,
        second.simulated_seconds,
    )
    assert first.ca_throttled_by_certpoll == 0
    other = await asyncio.to_thread(once, 6)
    assert other.tallies != first.tallies  # the seed does drive the run


async def test_the_demo_summary_says_whose_429s_they_are() -> None:
    result = _demo.DemoResult(
        tallies=(),
        wall_seconds=1.0,
        simulated_seconds=3600.0,
        ca_requests=100,
        ca_throttled=7,
        ca_throttled_by_certpoll=0,
    )
    summary = _demo.render_summary(result)
    assert "7 HTTP 429 answers: 7 scripted by the realistic profile" in summary
    assert "0 caused by certpoll" in summary
