"""The parts of the command not covered end to end: displays, the live demo, serve-sim.

Every test is async (the blocking ones run in a thread) so that all share the plugin's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import certpoll
from certpoll import Certificate, ConfigError, OrderState, OrderStatus, _cli, _demo, _display
from certpoll.testing import SimulatedCA
from tests.certs import make_csr

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


async def test_an_interrupted_status_reports_what_is_known_of_every_order() -> None:
    out = io.StringIO()
    display = _cli._Display(["7", "8", "9"], json_out=True, live=False)
    display._out = out
    display.update(ISSUED)
    refused = certpoll.TransientError("HTTP 503", status_code=503)
    display.attempt(
        certpoll.PollDetails(
            ca="digicert",
            order_id="8",
            attempt=1,
            outcome="pending",
            status_code=503,
            waited_so_far=0.0,
            next_wait=5.0,
            error=refused,
        )
    )
    statuses = display.statuses("digicert")
    display.finish(statuses, {})
    report = json.loads(out.getvalue())
    assert [r["state"] for r in report] == ["issued", "pending", "pending"]
    assert report[0]["serial"] == "1234"
    assert report[1]["last_error"] == "HTTP 503"
    assert report[2]["last_error"] is None
    assert report[2]["message"] == "interrupted before the order settled"


async def test_the_live_table_keeps_one_line_per_order_at_80_columns() -> None:
    serial = "1" * 48  # a 20-byte serial number in decimal
    certificate = dataclasses.replace(ISSUED.certificate, serial=serial)  # type: ignore[type-var]
    order_ids = [f"order-{i:04d}-with-a-long-id" for i in range(3)]
    issued = dataclasses.replace(ISSUED, certificate=certificate)
    out = io.StringIO()
    Console(file=out, width=80).print(
        _display.order_lines([(order_id, _cli._describe(issued)) for order_id in order_ids])
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == len(order_ids)
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("order-0000-with-a-long-id  issued  serial 1111")
    assert lines[0].endswith("…")  # cut, and seen to be: not a shorter serial


#: Printable ASCII (one column each), brackets included: what CAs put in ids and messages.
_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
#: What is known of an order: free text, with what looks like markup and 48-digit serials.
_KNOWN = st.lists(
    st.one_of(
        st.text(_PRINTABLE, max_size=20),
        st.sampled_from(["[bold]", "[/bold]", "[/x]", "[common_name]", "serial " + "1" * 48]),
    ),
    max_size=6,
).map(" ".join)


@settings(deadline=None)
@given(
    order_ids=st.lists(st.text(_PRINTABLE, min_size=1, max_size=40), min_size=1, max_size=3),
    known=_KNOWN,
    width=st.integers(min_value=60, max_value=200),
)
def test_each_order_line_is_its_text_or_a_marked_cut_of_it(
    order_ids: list[str], known: str, width: int
) -> None:
    """Whatever the CA says (``[/x]`` is not ``rich`` markup) and whatever the width."""
    id_width = max(map(len, order_ids))
    out = io.StringIO()
    Console(file=out, width=width).print(
        _display.order_lines([(order_id, known) for order_id in order_ids])
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == len(order_ids)
    for order_id, line in zip(order_ids, lines, strict=True):
        whole = f"{order_id.ljust(id_width)}  {known}"
        assert len(line) <= width
        if len(whole) <= width:
            assert line.rstrip() == whole.rstrip()
        else:
            assert line.endswith("…")
            assert whole.startswith(line.removesuffix("…"))


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


async def test_serve_sim_announces_every_variable_each_connector_needs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sim = SimulatedCA()
    client = _cli._client_key_pair(tmp_path)
    server = asyncio.create_task(_cli._run_server(sim, sock, client))
    try:
        for _ in range(500):
            out = capsys.readouterr().out
            if out:
                break
            await asyncio.sleep(0.01)
        for line in out.splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                monkeypatch.setenv(name, value)
        # Exactly these exports configure all four CAs, client key pairs included.
        connectors: list[
            certpoll.DigiCert | certpoll.Sectigo | certpoll.Entrust | certpoll.GlobalSign
        ] = [
            certpoll.DigiCert(certpoll.DigiCertSettings()),
            certpoll.Sectigo(certpoll.SectigoSettings()),
            certpoll.Entrust(certpoll.EntrustSettings()),
            certpoll.GlobalSign(certpoll.GlobalSignSettings()),
        ]
        for connector in connectors:
            async with connector:
                order = await connector.issue(
                    certpoll.CertificateRequest(
                        common_name="a.example", csr_pem=make_csr("a.example")
                    )
                )
                assert order.state is not OrderState.FAILED, connector.ca  # accepted
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        sock.close()
    assert oct(client[1].stat().st_mode & 0o777) == "0o600"


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


async def test_the_same_seed_prints_the_same_demo_at_any_speed() -> None:
    def printed(speed: float) -> list[str]:
        out = io.StringIO()
        _demo.run_demo(orders=60, seed=5, speed=speed, out=out, live=False)
        return out.getvalue().splitlines()

    slow, fast = await asyncio.to_thread(printed, 20000), await asyncio.to_thread(printed, 60000)
    # All but the first line (which names the speed) and the last (the wall time).
    assert slow[1:-1] == fast[1:-1]
    assert slow[-1].startswith("wall time")
    progress = [line for line in slow if "✓" in line]
    assert len(progress) >= 3  # on simulated time, not every wall-clock second
    # The live table looks at the run on the same ticks: the same run, to the last request.
    live = io.StringIO()
    result = await asyncio.to_thread(
        _demo.run_demo, orders=60, seed=5, speed=90000, out=live, live=True
    )
    summary = slow[slow.index(progress[-1]) + 1 :]
    assert _demo.render_summary(result).splitlines()[:-1] == summary[:-1]


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


def _chained(cause: BaseException, url: str = "https://ca.example:8443/x") -> Exception:
    """A certpoll error over an httpx error over ``cause``, as a connector raises it."""
    transport = httpx.ConnectError("connect failed", request=httpx.Request("GET", url))
    transport.__cause__ = cause
    error = certpoll.TransientError("digicert GET /x: ConnectError: connect failed")
    error.__cause__ = transport
    return error


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (None, None),
        (_chained(ConnectionRefusedError(111, "refused")), "connection refused (ca.example:8443)"),
        (
            _chained(OSError("all failed"), "http://127.0.0.1/x"),
            "digicert GET /x: ConnectError: connect failed",
        ),
        (
            _chained(ExceptionGroup("all", [ConnectionRefusedError(111, "x")]), "http://h/x"),
            "connection refused (h:80)",
        ),
        (
            _chained(socket.gaierror(-2, "unknown")),
            "cannot resolve the host name (ca.example:8443)",
        ),
        (
            _chained(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")),
            "TLS failed: SSLError (ca.example:8443)",
        ),
        (
            _chained(TimeoutError(110, "Connection timed out")),
            "connection timed out (ca.example:8443)",
        ),
        (certpoll.TransientError("HTTP 503:\n  busy"), "HTTP 503: busy"),
    ],
)
async def test_error_text_names_what_a_user_can_act_on(
    error: BaseException | None, text: str | None
) -> None:
    assert _cli._error_text(error) == text
