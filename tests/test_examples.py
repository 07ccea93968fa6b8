"""Each script of examples/ runs: the demo on few orders, the web services over real HTTP.

The web services talk to the simulated CA in-process and serve on 127.0.0.1 (uvicorn for
FastAPI, aiohttp's test server for aiohttp). Their simulator runs 1000 times faster than
the loop, so orders that take seconds of simulated validation settle in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import httpx
import pytest
import uvicorn
import uvicorn.importer
from aiohttp.test_utils import TestServer
from fastapi import FastAPI

import certpoll
from certpoll.testing import Credentials, OrderScript, SimulatedCA
from tests.certs import make_csr
from tests.helpers import DIGICERT_API_KEY, SECTIGO_LOGIN, SECTIGO_PASSWORD

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import aiohttp_app
import batch_renewal
import fastapi_app
import resume_after_restart

CREDENTIALS = Credentials(
    digicert_api_key=DIGICERT_API_KEY,
    sectigo_login=SECTIGO_LOGIN,
    sectigo_password=SECTIGO_PASSWORD,
)


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
    return {
        "digicert": certpoll.DigiCertSettings(
            api_key=DIGICERT_API_KEY,
            org_id=112233,
            base_url=urls.digicert,
            poll_initial_wait_seconds=0.01,
            poll_max_backoff_seconds=0.05,
        ),
        "sectigo": certpoll.SectigoSettings(
            customer_uri="sim-customer",
            login=SECTIGO_LOGIN,
            password=SECTIGO_PASSWORD,
            org_id=4455,
            cert_type=77,
            base_url=urls.sectigo,
            poll_initial_wait_seconds=0.01,
            poll_max_backoff_seconds=0.05,
        ),
    }


@pytest.fixture
def sim() -> SimulatedCA:
    sim = SimulatedCA(credentials=CREDENTIALS, speed=1000)
    sim.script_next(OrderScript(issue_after=40), count=1000)  # 40 ms of real time
    return sim


async def _exercise(client: httpx.AsyncClient, sim: SimulatedCA) -> None:
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


async def test_fastapi_app_over_uvicorn(sim: SimulatedCA) -> None:
    app = fastapi_app.create_app(_settings(sim), http=sim.client)
    async with _uvicorn(app) as origin, httpx.AsyncClient(base_url=origin) as client:
        await _exercise(client, sim)


async def test_aiohttp_app_over_its_test_server(sim: SimulatedCA) -> None:
    app = aiohttp_app.create_app(_settings(sim), http=sim.client)
    async with TestServer(app, host="127.0.0.1") as server:
        origin = str(server.make_url("")).rstrip("/")
        async with httpx.AsyncClient(base_url=origin) as client:
            await _exercise(client, sim)
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


# -- resume after restart -------------------------------------------------------------------


@pytest.mark.looptime
async def test_resume_after_restart(tmp_path: Path) -> None:
    db = tmp_path / "pending.sqlite3"
    saved, statuses = await resume_after_restart.run(db, orders=3)
    assert saved == 3
    assert [s.state for s in statuses] == [certpoll.OrderState.ISSUED] * 3
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM pending").fetchone() == (0,)


def test_resume_handles_round_trip_through_sqlite(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    handle = certpoll.PendingOrder(
        ca="digicert",
        order_id="42",
        attempts=4,
        next_poll_at=now + timedelta(minutes=5),
        deadline=now + timedelta(hours=1),
    )
    db = tmp_path / "h.sqlite3"
    assert resume_after_restart.save(db, [handle, handle]) == 2  # one row per order
    assert resume_after_restart.load(db, "digicert") == [handle]
    assert resume_after_restart.load(db, "sectigo") == []


async def test_demo_live_display_with_rich() -> None:
    import io

    from certpoll._demo import run_demo

    out = io.StringIO()
    result = await asyncio.to_thread(run_demo, orders=4, speed=20_000, live=True, out=out)
    assert all(t.accounted == t.orders for t in result.tallies)
    assert "wall time" in out.getvalue()
