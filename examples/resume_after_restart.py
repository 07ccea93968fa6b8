"""Persist pending orders to SQLite, stop, start again, and resume polling where it stopped.

A service that restarts must not forget the orders it is waiting for, nor restart their
backoff schedules from scratch (a thousand orders polled "at once" after every deploy is a
burst the CA notices). :meth:`certpoll.OrderStream.pending` hands out small
:class:`certpoll.PendingOrder` handles (CA, order id, attempts so far, next poll time,
deadline); store their JSON, and give them back to :func:`certpoll.poll_many` after the
restart.

Here the "CA" is the simulated DigiCert, where every order waits half an hour for approval
(simulated time runs 600 times faster: 3 s). The first run gives up after ten simulated
minutes and saves the handles; the second run, with a new client and a new connector,
loads them and polls until every order is issued::

    python examples/resume_after_restart.py [DB]      # default: a temporary file
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import certpoll
from certpoll.testing import OrderScript, Profile, SimulatedCA

#: Simulated seconds per real second.
SPEED = 600.0


def save(db: Path, handles: Iterable[certpoll.PendingOrder]) -> int:
    """Store the handles (one row per order); returns how many."""
    rows = [(h.ca, h.order_id, h.to_json()) for h in handles]
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pending "
            "(ca TEXT, order_id TEXT, handle TEXT, PRIMARY KEY (ca, order_id))"
        )
        conn.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", rows)
    return len(rows)


def load(db: Path, ca: certpoll.CAName) -> list[certpoll.PendingOrder]:
    """The stored handles of ``ca``."""
    with closing(sqlite3.connect(db)) as conn:
        found = conn.execute("SELECT handle FROM pending WHERE ca = ?", (ca,)).fetchall()
    return [certpoll.PendingOrder.from_json(text) for (text,) in found]


def forget(db: Path, statuses: Iterable[certpoll.OrderStatus]) -> None:
    """Delete the rows of settled orders (issued or failed)."""
    settled = [(s.ca, s.order_id) for s in statuses if s.state is not certpoll.OrderState.PENDING]
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany("DELETE FROM pending WHERE ca = ? AND order_id = ?", settled)


def csr(common_name: str) -> str:
    """A PEM certificate signing request for ``common_name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


async def first_run(dc: certpoll.DigiCert, names: Sequence[str], db: Path) -> int:
    """Submit the orders, poll for ten simulated minutes, save what is still pending."""
    ids = []
    for name in names:
        order = await dc.issue(certpoll.CertificateRequest(common_name=name, csr_pem=csr(name)))
        ids.append(order.order_id)
    async with certpoll.poll_many(dc, ids, max_wait=600 / SPEED) as stream:
        async for status in stream:
            print(f"first run: {status.order_id} {status.state.value}")
        return save(db, stream.pending())  # the process stops here


async def second_run(dc: certpoll.DigiCert, db: Path) -> list[certpoll.OrderStatus]:
    """After the restart: load the handles and resume their schedules."""
    handles = load(db, "digicert")
    print(f"second run: resuming {len(handles)} orders, e.g. {handles[0].to_json()}")
    statuses = []
    async with certpoll.poll_many(dc, handles) as stream:
        async for status in stream:
            print(f"second run: {status.order_id} {status.state.value}")
            statuses.append(status)
    forget(db, statuses)
    return statuses


async def run(db: Path, *, orders: int = 5) -> tuple[int, list[certpoll.OrderStatus]]:
    """Both runs against one simulated CA; returns what was saved and how it ended."""
    sim = SimulatedCA(
        profile=Profile.fixed(OrderScript(approval_for=1800, issue_after=60)), speed=SPEED
    )
    settings = certpoll.DigiCertSettings(
        api_key=sim.credentials.digicert_api_key,
        org_id=sim.credentials.digicert_org_id,
        base_url=sim.base_urls().digicert,
        # The real schedule (5 s, 15 s, ... 5 min) and PollMaxWait (an hour), compressed.
        poll_initial_wait_seconds=5 / SPEED,
        poll_max_backoff_seconds=300 / SPEED,
        poll_max_wait_seconds=3600 / SPEED,
    )
    names = [f"app{i}.example.com" for i in range(orders)]
    async with sim.client() as http, certpoll.DigiCert(settings, http=http) as dc:
        saved = await first_run(dc, names, db)
    # A new process: nothing survives but the database.
    async with sim.client() as http, certpoll.DigiCert(settings, http=http) as dc:
        statuses = await second_run(dc, db)
    return saved, statuses


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; the database is ``argv[0]`` or a temporary file."""
    args = sys.argv[1:] if argv is None else list(argv)
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(args[0]) if args else Path(scratch) / "pending.sqlite3"
        saved, statuses = asyncio.run(run(db))
    issued = sum(s.state is certpoll.OrderState.ISSUED for s in statuses)
    print(f"saved {saved} pending orders, {issued} issued after the restart")
    return 0 if issued == saved else 1


if __name__ == "__main__":
    sys.exit(main())
