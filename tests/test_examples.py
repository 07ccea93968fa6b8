"""Each script of examples/ runs: the demo on few orders, the web services over real HTTP.

The web services talk to the simulated CA in-process and serve on 127.0.0.1 (uvicorn for
FastAPI, aiohttp's test server for aiohttp). Their simulator runs 1000 times faster than
the loop, so orders that take seconds of simulated validation settle in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path

import httpx
import pytest
import uvicorn
import uvicorn.importer
from aiohttp.test_utils import TestServer
from fastapi import FastAPI

import certpoll
from bench.shared_gate import CountingCA, busiest
from certpoll.testing import DIGICERT, OrderScript, Profile, SimulatedCA, serve
from tests.certs import make_csr
from tests.credentials import CREDENTIALS
from tests.helpers import DIGICERT_API_KEY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import aiohttp_app
import batch_renewal
import fastapi_app
import resume_after_restart


async def test_batch_renewal_main_accounts_for_every_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In a thread: the script runs its own event loop, as it does from the command line.
    result = await asyncio.to_thread(batch_renewal.main, ["12"], speed=20_000)
    out = capsys.readouterr().out
    assert "12 renewals" in out
    assert "wall time" in out
    assert [t.orders for t in result.tallies] == [3, 3, 3, 3]
    for tally in result.tallies:
        assert tally.accounted == tally.orders
        assert tally.polling == tally.submitting == 0
        assert tally.requests_sent >= tally.orders
    assert result.ca_requests == sum(t.requests_sent for t in result.tallies)


# -- the web services ---------------------------------------------------------------------


def _settings(sim: SimulatedCA) -> dict[certpoll.CAName, certpoll.CASettings]:
    urls = sim.base_urls()
    cas: tuple[certpoll.CAName, ...] = ("digicert", "sectigo")
    return {
        ca: CREDENTIALS.settings(
            ca, urls[ca], poll_initial_wait_seconds=0.01, poll_max_backoff_seconds=0.05
        )
        for ca in cas
    }


class _HandClock:
    """The simulator's time, moved only by the test: no order issues before the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hand_clock() -> _HandClock:
    return _HandClock()


@pytest.fixture
def sim(hand_clock: _HandClock) -> SimulatedCA:
    # On real time, a loaded machine let an order issue before its submission answered.
    sim = SimulatedCA(credentials=CREDENTIALS, clock=hand_clock)
    sim.script_next(OrderScript(issue_after=40), count=1000)
    return sim


async def _exercise(client: httpx.AsyncClient, sim: SimulatedCA, clock: _HandClock) -> None:
    """Many concurrent orders, background polls settle them, reads and listing agree."""

    async def post(ca: str, name: str) -> dict[str, str]:
        body = {"ca": ca, "common_name": name, "csr_pem": make_csr(name)}
        response = await client.post("/orders", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, str] = response.json()
        return data

    async def listing(state: str) -> list[dict[str, str]]:
        response = await client.get("/orders", params={"state": state})
        assert response.status_code == 200
        data: list[dict[str, str]] = response.json()
        return data

    submitted = await asyncio.gather(
        *(post(ca, f"h{i}.{ca}.example") for i in range(12) for ca in ("digicert", "sectigo"))
    )
    assert {o["state"] for o in submitted} == {"pending"}
    assert len((await client.get("/orders")).json()) == 24
    assert len(await listing("pending")) == 24
    clock.now = 41.0  # every order's issue_after has passed
    for _ in range(500):
        if not await listing("pending"):
            break
        await asyncio.sleep(0.01)  # the background polls run on the server's loop
    assert len(await listing("issued")) == 24
    one = next(o for o in submitted if o["ca"] == "digicert")
    read = (await client.get(f"/orders/digicert/{one['order_id']}")).json()
    assert read["state"] == "issued"
    assert read["serial"] == str(sim.order("digicert", one["order_id"]).serial)
    assert "BEGIN CERTIFICATE" in read["certificate_pem"]
    assert (await client.get("/orders/digicert/999")).status_code == 404
    body = {"ca": "entrust", "common_name": "x.example", "csr_pem": make_csr("x.example")}
    assert (await client.post("/orders", json=body)).status_code in (404, 422)
    bad = {"ca": "digicert", "common_name": "x.example", "csr_pem": "not a CSR"}
    assert (await client.post("/orders", json=bad)).status_code == 422
    # Valid JSON whose "\ud800" decodes to text UTF-8 cannot encode: a 422, not a 500.
    unencodable = {"ca": "digicert", "common_name": "\ud800", "csr_pem": make_csr("x.example")}
    response = await client.post(
        "/orders",
        content=json.dumps(unencodable),  # ASCII, with the surrogate escaped
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "UTF-8" in response.json()["detail"]


class _QuietServer(uvicorn.Server):
    # The test runner owns the signals.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def _uvicorn(app: object) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_config=None,
        access_log=False,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_fastapi_app_over_uvicorn(sim: SimulatedCA, hand_clock: _HandClock) -> None:
    app = fastapi_app.create_app(_settings(sim), http=sim.client)
    async with _uvicorn(app) as origin, httpx.AsyncClient(base_url=origin) as client:
        await _exercise(client, sim, hand_clock)


async def test_aiohttp_app_over_its_test_server(sim: SimulatedCA, hand_clock: _HandClock) -> None:
    app = aiohttp_app.create_app(_settings(sim), http=sim.client)
    async with TestServer(app, host="127.0.0.1") as server:
        origin = str(server.make_url("")).rstrip("/")
        async with httpx.AsyncClient(base_url=origin) as client:
            await _exercise(client, sim, hand_clock)
            response = await client.post("/orders", json=["not", "an", "object"])
            assert response.status_code == 422
            # Bad input is a 422 with a JSON body, as FastAPI answers, never a 500.
            for body in (b"{not json", b"\xff\xfe", b""):
                response = await client.post("/orders", content=body)
                assert response.status_code == 422, body
                assert response.json() == {"detail": "the body is not JSON"}
            response = await client.get("/orders/digicert/999")
            assert response.json() == {"detail": "no such order"}


def test_settings_from_env_takes_only_configured_cas(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("DIGICERT", "SECTIGO", "ENTRUST", "GLOBALSIGN"):
        for prefix in ("CERTPOLL", "CERTCTL"):
            for var in ("API_KEY", "ORG_ID", "LOGIN", "API_URL", "CA_ID"):
                monkeypatch.delenv(f"{prefix}_{name}_{var}", raising=False)
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", DIGICERT_API_KEY)
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "1")
    monkeypatch.setenv("CERTPOLL_ENTRUST_API_URL", "http://127.0.0.1:9/entrust")
    for module in (fastapi_app, aiohttp_app):
        caplog.clear()
        found = module.settings_from_env()
        assert list(found) == ["digicert"]
        # Each skipped CA is named, with the reason (the variable that is missing).
        why = {r.getMessage().split()[0]: r.getMessage() for r in caplog.records}
        assert set(why) == {"sectigo", "entrust", "globalsign"}
        assert "CERTPOLL_ENTRUST_CA_ID" in why["entrust"]


def test_uvicorn_finds_the_fastapi_app_by_its_name() -> None:
    # ``uvicorn fastapi_app:app`` imports the module and takes ``app``.
    assert isinstance(uvicorn.importer.import_from_string("fastapi_app:app"), FastAPI)


# -- resume after restart: a real kill -9 ---------------------------------------------------


async def _read_until(
    stream: asyncio.StreamReader, predicate: Callable[[list[str]], bool], lines: list[str]
) -> None:
    while not predicate(lines):
        line = await asyncio.wait_for(stream.readline(), 60)
        if not line:
            return
        lines.append(line.decode().rstrip("\n"))


async def test_resume_after_restart_survives_kill_9(tmp_path: Path) -> None:
    sim = SimulatedCA(
        profile=Profile.fixed(OrderScript(approval_for=1800, issue_after=60)),
        credentials=CREDENTIALS,
        speed=600,
    )
    script = Path(resume_after_restart.__file__)
    store_url = f"sqlite:///{tmp_path / 'orders.db'}"
    async with serve(sim, tls=False) as served:
        env = {
            **os.environ,
            **CREDENTIALS.environment("digicert", served.base_urls.digicert),
        }
        command = [sys.executable, str(script), store_url, "--speed", "600"]

        async def start() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                *command, env=env, stdout=asyncio.subprocess.PIPE
            )

        first = await start()
        assert first.stdout is not None
        lines: list[str] = []
        # Killed once it has submitted everything and its worker holds the orders.
        await _read_until(first.stdout, lambda seen: any('"claimed"' in x for x in seen), lines)
        first.kill()
        await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert sum("submitted, order" in line for line in lines) == 5
        assert sim.order_count == 5
        assert not any("certificates issued" in line for line in lines)

        second = await start()
        out, _ = await asyncio.wait_for(second.communicate(), 60)
        text = out.decode()
        assert second.returncode == 0, text
        assert text.count("already in the store") == 5
        assert "submitted, order" not in text
        assert "5 of 5 certificates issued" in text
        assert sim.order_count == 5  # no order was placed twice
        assert DIGICERT_API_KEY not in text + "\n".join(lines)


async def test_demo_live_display_with_rich() -> None:
    import io

    from certpoll._demo import run_demo

    out = io.StringIO()
    result = await asyncio.to_thread(run_demo, orders=4, speed=20_000, live=True, out=out)
    assert all(t.accounted == t.orders for t in result.tallies)
    assert "wall time" in out.getvalue()


# -- the FastAPI example under ``uvicorn --workers 4``, on one SQLite gate -------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_fastapi_app_under_uvicorn_workers_shares_one_gate(tmp_path: Path) -> None:
    """Four uvicorn worker processes, each with its own connector, on one credential: with
    ``CERTPOLL_DIGICERT_GATE_URL`` naming one SQLite file they keep DigiCert's limits
    together, as the CA counts them (each alone would allow 80 per 5 s: 320 together)."""
    sim = CountingCA(speed=1.0)
    orders = 130  # one request each (issued at once): more than one 5 s window allows
    port = _free_port()
    async with serve(sim, tls=False) as served:
        env = {
            **os.environ,
            **sim.credentials.environment("digicert", served.base_urls.digicert),
            "CERTPOLL_DIGICERT_GATE_URL": f"sqlite:///{tmp_path / 'gate.db'}",
        }
        command = [
            *(sys.executable, "-m", "uvicorn", "fastapi_app:app"),
            *("--app-dir", str(Path(fastapi_app.__file__).parent)),
            *("--workers", "4", "--host", "127.0.0.1", "--port", str(port)),
            *("--log-level", "warning"),
        ]
        server = await asyncio.create_subprocess_exec(
            *command, env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            origin = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=origin, timeout=120) as client:
                for _ in range(600):  # up to 60 s for the four processes to start
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/orders")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)  # time for the other workers to listen too

                async def order(index: int) -> int:
                    name = f"w{index}.example"
                    body = {"ca": "digicert", "common_name": name, "csr_pem": make_csr(name)}
                    return (await client.post("/orders", json=body)).status_code

                codes = await asyncio.gather(*(order(index) for index in range(orders)))
        finally:
            server.send_signal(signal.SIGTERM)
            _, errors = await asyncio.wait_for(server.communicate(), 60)
    assert codes == [201] * orders, errors.decode()[-2000:]
    assert sim.order_count == orders
    assert sim.limits_exceeded == 0  # no 429 was caused
    assert sim.throttled == 0
    (short, short_s), (long, long_s) = DIGICERT.RATE_LIMITS
    assert len(sim.arrivals) > short  # more than one window's worth: the limit was reached
    assert busiest(sim.arrivals, short_s) <= short
    assert busiest(sim.arrivals, long_s) <= long
