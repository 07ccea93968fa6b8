"""Orders that survive ``kill -9``: submitted through an order store, polled by a worker.

A renewal service restarts, is rescheduled, is killed. A paid order must be neither lost
nor ordered twice. Here each certificate is ordered with :func:`certpoll.submit_order` under
a key of its own (``renew:<name>``): the store records the intent before the POST and the
CA's order id with its answer, so running the script again finds every order already in
the store and submits nothing. A :class:`certpoll.Worker` then claims the pending orders for
a lease, polls them (their schedules continue from the store), and writes each certificate
back. Kill the script at any moment and run it again: it resumes the same orders.

Against the simulated CA, served on 127.0.0.1 with orders that wait half an hour for
approval, in simulated time running 600 times faster (3 s)::

    certpoll serve-sim --speed 600    # prints the CERTPOLL_DIGICERT_* settings to export
    python examples/resume_after_restart.py sqlite:///orders.db --speed 600
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import certpoll

#: The certificates this service renews.
NAMES = tuple(f"app{i}.example.com" for i in range(5))
#: How long a worker's claim lasts unrenewed: after a crash, the orders come back this fast.
LEASE = 2.0


def csr(common_name: str) -> str:
    """A PEM certificate signing request for ``common_name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


async def submit_all(dc: certpoll.DigiCert, store: certpoll.OrderStore) -> None:
    """Order each certificate once, ever: a key already in the store is not sent again."""
    for name in NAMES:
        key = f"renew:{name}"
        known = await store.get(key)
        record = await certpoll.submit_order(
            dc, store, certpoll.CertificateRequest(common_name=name, csr_pem=csr(name)), key=key
        )
        how = "already in the store" if known is not None else "submitted"
        print(f"{name}: {how}, order {record.order_id} {record.state.value}", flush=True)


async def poll_until_settled(dc: certpoll.DigiCert, store: certpoll.OrderStore) -> int:
    """Run a worker until no order of ours is pending; returns how many were issued."""
    worker = certpoll.Worker(
        store, [dc], lease=LEASE, claim_interval=0.1, on_event=lambda e: print(e.as_json())
    )
    running = asyncio.create_task(worker.run())
    keys = {f"renew:{name}" for name in NAMES}
    try:
        while not running.done():
            open_orders = await store.orders(
                states=[certpoll.StoredState.PENDING, certpoll.StoredState.INTENT]
            )
            if not keys & {order.key for order in open_orders}:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await running
    issued = await store.orders(states=[certpoll.StoredState.ISSUED])
    return len(keys & {order.key for order in issued})


async def run(store_url: str, settings: certpoll.DigiCertSettings) -> int:
    """Submit what is not in the store yet, then poll everything to its certificate."""
    store = certpoll.open_store(store_url)
    try:
        async with certpoll.DigiCert(settings) as dc:
            await submit_all(dc, store)
            return await poll_until_settled(dc, store)
    finally:
        await store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """``resume_after_restart.py STORE_URL [--speed N]``; DigiCert settings from the env."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("store_url", help="e.g. sqlite:///orders.db")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="how much faster the CA's clock runs"
    )
    args = parser.parse_args(argv)
    speed: float = args.speed
    # DigiCert's real schedule (5 s, growing to 5 min; an hour in all), compressed to the
    # simulator's speed; the credential and the address come from CERTPOLL_DIGICERT_*.
    settings = certpoll.DigiCertSettings(
        poll_initial_wait_seconds=5 / speed,
        poll_max_backoff_seconds=300 / speed,
        poll_max_wait_seconds=3600 / speed,
    )
    issued = asyncio.run(run(args.store_url, settings))
    print(f"{issued} of {len(NAMES)} certificates issued", flush=True)
    return 0 if issued == len(NAMES) else 1


if __name__ == "__main__":
    sys.exit(main())
