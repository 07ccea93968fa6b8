"""Crash test: worker processes on one SQLite store, killed with SIGKILL at random points.

Three processes each submit their share of the orders (through the store, intent first) and
then run a worker, against the simulated CA served on 127.0.0.1. The test kills one at
random moments (while it submits, between a POST and its write, while it polls) and starts
it again; the restarted process submits its share again. Afterwards:

- no certificate was ordered twice (the simulator saw each common name at most once);
- every order is final with exactly one answer, or pending, or an uncertain intent (a kill
  between the POST and the write, or before the POST), and an uncertain intent whose POST
  reached the CA names a common name the CA knows;
- every order that reached the CA was settled once the survivors had a lease to reclaim it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

from certpoll import StoredState, open_store
from certpoll.testing import Credentials, OrderScript, Profile, SimulatedCA, serve
from tests.helpers import DIGICERT_API_KEY

ORDERS = 150
PROCESSES = 3
KILLS = 4
LEASE = 0.5

CHILD = """
import asyncio, os, pathlib, signal, sys
import certpoll
from tests.certs import make_csr

async def main(url, base_url, first, last):
    store = certpoll.open_store(url)
    settings = certpoll.DigiCertSettings(
        api_key=sys.argv[5], org_id=112233, base_url=base_url,
        poll_initial_wait_seconds=0.005, poll_max_backoff_seconds=0.05,
        poll_max_wait_seconds=30, rate_limits=(),
    )
    try:
        async with certpoll.DigiCert(settings) as dc:
            for index in range(first, last):
                name = f"o{index}.example"
                request = certpoll.CertificateRequest(common_name=name, csr_pem=make_csr(name))
                try:
                    await certpoll.submit_order(dc, store, request, key=f"o{index}")
                except certpoll.SubmissionUncertain:
                    pass  # a kill left it uncertain: never sent again
            worker = certpoll.Worker(store, [dc], lease=float(sys.argv[6]), claim_interval=0.05)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            # From here on SIGTERM is a clean stop: say so to the test.
            pathlib.Path(sys.argv[7], f"working-{os.getpid()}").touch()
            await worker.run()
    finally:
        await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def test_killed_workers_never_order_twice_nor_lose_an_order(tmp_path: Path) -> None:
    rng = random.Random(2026)
    sim = SimulatedCA(
        profile=Profile(pick=lambda r, ca: OrderScript(issue_after=r.uniform(0, 200))),
        credentials=Credentials(digicert_api_key=DIGICERT_API_KEY),
        speed=1000,
        digicert_rate_limits=(),  # crashes are the subject here, not the rate limits
    )
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    share = ORDERS // PROCESSES
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    async with serve(sim, tls=False) as served:

        async def start(index: int) -> asyncio.subprocess.Process:
            first = index * share
            return await asyncio.create_subprocess_exec(
                *[sys.executable, "-c", CHILD, url, served.base_urls.digicert],
                *[str(first), str(first + share), DIGICERT_API_KEY, str(LEASE), str(tmp_path)],
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
            )

        children = [await start(index) for index in range(PROCESSES)]
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            victim = rng.randrange(PROCESSES)
            children[victim].send_signal(signal.SIGKILL)
            await children[victim].wait()
            children[victim] = await start(victim)
        for child in children:
            # A process restarted late may still be submitting its share: wait until every
            # one works (and so has submitted and takes SIGTERM as a clean stop).
            for _ in range(600):
                if (tmp_path / f"working-{child.pid}").exists():
                    break
                await asyncio.sleep(0.1)
        store = open_store(url)
        try:
            for _ in range(600):  # at most a minute for the survivors to settle everything
                counts = await store.counts()
                if counts[StoredState.PENDING] == counts[StoredState.INTENT] == 0:
                    break
                await asyncio.sleep(0.1)
            for child in children:
                child.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(child.wait(), 30) for child in children]
            assert codes == [0] * PROCESSES
            orders = {order.key: order for order in await store.orders(limit=10_000)}
        finally:
            await store.aclose()
    # The CA numbers its orders from 100001: every order it ever took, by common name.
    at_the_ca = Counter(
        sim.order("digicert", str(100001 + index)).common_name for index in range(sim.order_count)
    )
    assert set(at_the_ca.values()) == {1}, "a certificate was ordered twice"
    assert len(orders) == ORDERS // PROCESSES * PROCESSES, "an order was never submitted"
    assert set(at_the_ca) <= {order.common_name for order in orders.values()}, "an order lost"
    states = Counter(order.state for order in orders.values())
    assert states[StoredState.PENDING] == states[StoredState.INTENT] == 0, states
    assert states[StoredState.ISSUED] + states[StoredState.UNCERTAIN] == len(orders), states
    for order in orders.values():
        if order.state is StoredState.ISSUED:
            assert order.certificate is not None
            assert order.owner is None
            assert at_the_ca[order.common_name] == 1
        else:  # killed between the intent and the POST's answer
            assert order.order_id is None
