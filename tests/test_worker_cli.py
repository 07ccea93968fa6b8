"""``certpoll orders`` and ``certpoll worker``: listing a store, and a worker stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from certpoll import CertificateRequest, DigiCert, StoredState, open_store, submit_order
from certpoll._cli import main
from certpoll.testing import Credentials, OrderScript, Profile, SimulatedCA, serve
from tests.certs import make_csr
from tests.helpers import DIGICERT_API_KEY, leaked_secrets
from tests.test_worker import settings


async def _fill(url: str, sim: SimulatedCA, base_url: str, names: list[str]) -> None:
    store = open_store(url)
    try:
        async with sim.client() as http, DigiCert(settings(base_url), http=http) as dc:
            for name in names:
                request = CertificateRequest(common_name=name, csr_pem=make_csr(name))
                await submit_order(dc, store, request)
        intent, _ = await store.add_intent(
            key="lost",
            ca="digicert",
            fingerprint="f",
            common_name="lost.example",
            owner="o",
            lease=60,
        )
        await store.record_uncertain(intent, error="the answer never came")
    finally:
        await store.aclose()


def test_orders_lists_the_store_by_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    sim = SimulatedCA(
        profile=Profile.fixed(OrderScript(approval_for=3600)),
        credentials=Credentials(digicert_api_key=DIGICERT_API_KEY),
    )
    asyncio.run(_fill(url, sim, sim.base_urls().digicert, ["a.example", "b.example"]))
    assert main(["orders", "--store", url, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["counts"] == {
        "intent": 0,
        "pending": 2,
        "issued": 0,
        "failed": 0,
        "uncertain": 1,
    }
    assert [o["state"] for o in document["orders"]] == ["pending", "pending", "uncertain"]
    assert document["orders"][2]["last_error"] == "the answer never came"
    assert main(["orders", "--store", url, "--state", "uncertain"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("intent 0, pending 2")
    assert "lost.example" in text
    assert "a.example" not in text


def test_a_store_command_without_a_store_says_how(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTPOLL_STORE_URL", raising=False)
    assert main(["orders"]) == 1
    err = capsys.readouterr().err
    assert "no order store given" in err
    assert "CERTPOLL_STORE_URL" in err
    assert main(["orders", "--store", "postgresql://u:pw-SECRET@/db"]) == 1
    assert "pw-SECRET" not in capsys.readouterr().err


async def test_worker_stops_on_sigterm_and_releases_its_orders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    sim = SimulatedCA(
        profile=Profile.fixed(OrderScript(approval_for=10**6)),
        credentials=Credentials(digicert_api_key=DIGICERT_API_KEY),
        speed=1000,
    )
    async with serve(sim, tls=False) as served:
        base_url = served.base_urls.digicert
        await _fill(url, sim, base_url, [f"t{i}.example" for i in range(3)])
        env = {
            **os.environ,
            "CERTPOLL_DIGICERT_BASE_URL": base_url,
            "CERTPOLL_DIGICERT_API_KEY": DIGICERT_API_KEY,
            "CERTPOLL_DIGICERT_ORG_ID": "112233",
            "CERTPOLL_DIGICERT_POLL_INITIAL_WAIT_SECONDS": "0.01",
        }
        worker = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "certpoll", "worker", "--store", url, "--ca", "digicert"],
            *["--lease", "60"],
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert worker.stdout is not None
        first = json.loads(await asyncio.wait_for(worker.stdout.readline(), 30))
        assert (first["event"], first["count"]) == ("claimed", 3)
        assert len(set(first["keys"])) == 3  # which orders, so a reader can time each claim
        store = open_store(url)
        try:
            held = await store.orders(states=[StoredState.PENDING])
            assert {order.owner for order in held} != {None}
            worker.send_signal(signal.SIGTERM)
            rest, err = await asyncio.wait_for(worker.communicate(), 30)
            assert worker.returncode == 0, err.decode()
            events = [json.loads(line) for line in rest.decode().splitlines()]
            assert events[0] == {"event": "released", "count": 3}
            assert events[-1]["event"] == "stopped"
            assert events[-1]["counts"]["pending"] == 3
            assert not leaked_secrets(rest.decode() + err.decode())
            released = await store.orders(states=[StoredState.PENDING])
            # The 60 s lease is not waited for: every order is free for the next worker.
            assert [order.owner for order in released] == [None, None, None]
        finally:
            await store.aclose()
