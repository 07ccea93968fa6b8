"""The batch renewal demo: thousands of orders over the four simulated CAs, on compressed time.

``certpoll demo`` and ``examples/batch_renewal.py`` both run :func:`run_demo`. The library
part is :func:`renew`: submit each order once, then hand the pending ones to
:func:`certpoll.poll_many`, which polls them all through the connector's gate.

Time. The demo runs on an event loop with a virtual clock (:func:`compressed_loop`): the
clock stands still while the loop computes, and each wait the loop makes moves it on by
exactly that wait, which takes ``1 / speed`` of it in wall time. Everything reads that clock
(the simulator, the schedules of ``poll_many``, the gate's rate limits and cooldowns,
``Retry-After``), so the connectors keep their real settings: a 5 s first wait, a 5-minute
backoff cap, DigiCert's rate limits. Only PollMaxWait is raised to an hour, so that
validation taking minutes and some approvals finish, and the attempt timeout to 2 minutes.
Because neither CPU time nor the machine's load reaches the clock, and every random source
is seeded, the same seed gives the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import selectors
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._connectors._base import Connector
from ._connectors.registry import connector_for
from ._display import has_rich, live_view, plain_table, rich_table
from ._errors import CertpollError, ConfigError
from ._fleet import poll_many
from ._models import CAName, CertificateRequest, OrderState, OrderStatus
from ._settings import CASettings

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "CAS",
    "DemoResult",
    "Tally",
    "compressed_loop",
    "make_requests",
    "render_summary",
    "renew",
    "run_batch",
    "run_demo",
]

CAS: Final[tuple[CAName, ...]] = ("digicert", "sectigo", "entrust", "globalsign")
#: Simulated seconds per wall-clock second.
DEFAULT_SPEED: Final = 600.0
DEFAULT_ORDERS: Final = 2000
DEFAULT_SEED: Final = 2024
#: PollMaxWait of the demo, in simulated seconds: long enough for validation that takes
#: minutes and for some approvals; orders waiting hours for approval stay pending.
DEMO_MAX_WAIT: Final = 60 * 60.0
DEMO_ATTEMPT_TIMEOUT: Final = 120.0
#: How often the display looks at the tallies, in simulated seconds (a quarter of a second
#: at the default speed). The same for the live table and the plain lines, and whatever the
#: speed: its timer is part of the run, which then replays exactly with the same seed.
_TICK: Final = 150.0


# -- compressed time ----------------------------------------------------------------------


class _CompressedSelector(selectors.DefaultSelector):
    """Waits ``1 / speed`` of every timeout; a wait that ran out moves the loop's clock on."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self._speed = speed
        #: The loop's clock, in simulated seconds.
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(None if timeout is None else timeout / self._speed)
        if not events and timeout is not None:
            self.now += timeout
        return events


class _CompressedLoop(asyncio.SelectorEventLoop):
    def __init__(self, speed: float) -> None:
        self._compressed = _CompressedSelector(speed)
        super().__init__(self._compressed)

    def time(self) -> float:
        return self._compressed.now


def compressed_loop(speed: float) -> asyncio.AbstractEventLoop:
    """An event loop on a virtual clock whose waits take ``1 / speed`` of their time.

    ``loop.time()`` starts at 0 and advances only when the loop waits for a timer, by
    exactly that wait: computing takes no simulated time, so a run does not depend on the
    machine's speed or load.
    """
    given: object = speed
    if not (isinstance(given, int | float) and 1 <= given <= 100_000):
        raise ConfigError(f"speed must be between 1 and 100000, not {speed!r}")
    return _CompressedLoop(float(speed))


# -- the library part -------------------------------------------------------------------


@dataclasses.dataclass(slots=True, kw_only=True)
class Tally:
    """Where one CA's orders stand; every order is in exactly one of the last five counts."""

    ca: CAName
    orders: int
    #: Not submitted: the CA refused the order, or its fate is uncertain.
    not_submitted: int = 0
    #: Submitted and not yet settled.
    polling: int = 0
    issued: int = 0
    failed: int = 0
    #: Still pending at PollMaxWait.
    still_pending: int = 0
    #: Submitted, not yet answered.
    submitting: int = 0
    requests_sent: int = 0
    rate_limited: int = 0

    @property
    def accounted(self) -> int:
        """Orders in one of the counts (equals ``orders`` at all times)."""
        return (
            self.submitting
            + self.not_submitted
            + self.polling
            + self.issued
            + self.failed
            + self.still_pending
        )

    def count_settled(self, status: OrderStatus) -> bool:
        """Count ``status`` if it is issued or failed; False (nothing counted) if pending."""
        if status.state is OrderState.ISSUED:
            self.issued += 1
        elif status.state is OrderState.FAILED:
            self.failed += 1
        else:
            return False
        return True


async def renew(
    connector: Connector[CASettings],
    requests: Sequence[CertificateRequest],
    tally: Tally,
    *,
    concurrency: int = 20,
) -> None:
    """Submit every request once, then poll the pending orders with ``poll_many``.

    ``tally`` is updated as orders move on; ``requests_sent`` and ``rate_limited`` come from
    the connector's gate, so they count submissions and polls alike.
    """
    gate = connector.gate
    tally.submitting = len(requests)
    pending: list[str] = []
    slots = asyncio.Semaphore(concurrency)

    def progress(_: object) -> None:
        tally.requests_sent, tally.rate_limited = gate.requests_sent, gate.rate_limited

    async def submit(request: CertificateRequest) -> None:
        async with slots:
            try:
                status = await connector.issue(request)
            except CertpollError:
                # Refused (4xx, 429) or uncertain (timeout, 5xx): never submitted twice.
                tally.submitting -= 1
                tally.not_submitted += 1
                return
            finally:
                progress(None)
        tally.submitting -= 1
        if not tally.count_settled(status):
            tally.polling += 1
            pending.append(status.order_id)

    async with asyncio.TaskGroup() as group:
        for request in requests:
            group.create_task(submit(request))

    async with poll_many(
        connector, pending, concurrency=concurrency, on_progress=progress
    ) as stream:
        async for status in stream:
            tally.polling -= 1
            if not tally.count_settled(status):
                tally.still_pending += 1
    progress(None)


# -- the simulated world ----------------------------------------------------------------


def make_requests(count: int, *, ca: str) -> list[CertificateRequest]:
    """``count`` renewal requests for ``ca``, one CSR each (one key shared: it is a demo)."""
    key = ec.generate_private_key(ec.SECP256R1())
    requests = []
    for index in range(count):
        name = f"host{index:05d}.{ca}.example.com"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        requests.append(
            CertificateRequest(
                common_name=name, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode()
            )
        )
    return requests


def _split(total: int) -> dict[CAName, int]:
    share, extra = divmod(total, len(CAS))
    return {ca: share + (1 if i < extra else 0) for i, ca in enumerate(CAS)}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What a demo run did."""

    tallies: tuple[Tally, ...]
    wall_seconds: float
    simulated_seconds: float
    #: What the simulated CA saw: every request, and the 429s it sent.
    ca_requests: int
    ca_throttled: int
    #: Of those 429s, the ones certpoll caused by breaking a CA's rate limit (the rest
    #: are scripted by the realistic profile, as real CAs send them under load).
    ca_throttled_by_certpoll: int


async def run_batch(
    *,
    orders: int = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
    concurrency: int = 20,
    on_tick: Callable[[Sequence[Tally]], None] | None = None,
    tick: float = 1.0,
) -> DemoResult:
    """Renew ``orders`` certificates over the four CAs of one simulator (realistic profile).

    Runs on the current loop's clock: use :func:`compressed_loop` to see hours in seconds.
    ``on_tick`` gets the tallies every ``tick`` loop seconds and once at the end.
    """
    from .testing import Profile, SimulatedCA  # not imported by ``import certpoll``

    given: object = orders
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ConfigError(f"orders must be a positive integer, not {orders!r}")
    loop = asyncio.get_running_loop()
    started_wall, started = time.monotonic(), loop.time()
    sim = SimulatedCA(profile=Profile.realistic(seed))
    urls = sim.base_urls()
    # In-process there is no TLS: Entrust and GlobalSign trust the transport, and their
    # client key pair is never opened because the connectors get the simulator's client.
    settings = {
        ca: sim.credentials.settings(
            ca,
            urls[ca],
            poll_max_wait_seconds=DEMO_MAX_WAIT,
            attempt_timeout_seconds=DEMO_ATTEMPT_TIMEOUT,
        )
        for ca in CAS
    }
    counts = _split(orders)
    tallies = tuple(Tally(ca=ca, orders=counts[ca]) for ca in CAS)
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            if on_tick is not None:
                on_tick(tallies)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), tick)

    async with sim.client() as http:
        connectors = [
            # The display replaces the per-attempt log lines: no hooks. The jitter is drawn
            # from the seed, so that the run replays.
            connector_for(
                settings[ca],
                http=http,
                poller=settings[ca].make_poller(hooks=(), rng=random.Random(f"{seed}:{ca}")),
            )
            for ca in CAS
        ]
        work = {ca: make_requests(counts[ca], ca=ca) for ca in CAS}
        async with asyncio.TaskGroup() as group:
            display = group.create_task(ticker())
            try:
                async with asyncio.TaskGroup() as renewals:
                    for connector, tally in zip(connectors, tallies, strict=True):
                        renewals.create_task(renew(connector, work[tally.ca], tally))
            finally:
                done.set()
            await display
        for connector in connectors:
            await connector.aclose()
    if on_tick is not None:
        on_tick(tallies)
    return DemoResult(
        tallies=tallies,
        wall_seconds=time.monotonic() - started_wall,
        simulated_seconds=loop.time() - started,
        ca_requests=sim.requests,
        ca_throttled=sim.throttled,
        ca_throttled_by_certpoll=sim.limits_exceeded,
    )


# -- display ----------------------------------------------------------------------------

_COLUMNS: Final = ("CA", "orders", "issued", "failed", "pending", "refused", "requests", "429s")


def _rows(tallies: Sequence[Tally], *, final: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for t in tallies:
        pending = t.still_pending if final else t.polling + t.submitting + t.still_pending
        rows.append(
            (
                t.ca,
                str(t.orders),
                str(t.issued),
                str(t.failed),
                str(pending),
                str(t.not_submitted),
                str(t.requests_sent),
                str(t.rate_limited),
            )
        )
    totals = [sum(int(row[i]) for row in rows) for i in range(1, len(_COLUMNS))]
    rows.append(("total", *map(str, totals)))
    return rows


def render_summary(result: DemoResult) -> str:
    """The summary table as plain text, with the times and what the CA saw."""
    minutes = result.simulated_seconds / 60
    return "\n".join(
        [
            plain_table(_COLUMNS, _rows(result.tallies, final=True)),
            "",
            "pending: still pending at PollMaxWait (an hour, simulated), resumable later; "
            "refused: the CA refused the submission",
            f"the simulated CA saw {result.ca_requests} requests and sent "
            f"{result.ca_throttled} HTTP 429 answers: "
            f"{result.ca_throttled - result.ca_throttled_by_certpoll} scripted by the "
            f"realistic profile (CA-wide bursts and per-order throttling), "
            f"{result.ca_throttled_by_certpoll} caused by certpoll exceeding a rate limit",
            f"wall time {result.wall_seconds:.1f} s for {minutes:.0f} simulated minutes",
        ]
    )


def _progress_line(tallies: Sequence[Tally]) -> str:
    parts = []
    for t in tallies:
        pending = t.polling + t.submitting + t.still_pending
        parts.append(f"{t.ca} {t.issued}✓ {t.failed}✗ {pending}…")
    sent = sum(t.requests_sent for t in tallies)
    limited = sum(t.rate_limited for t in tallies)
    return " | ".join(parts) + f" | {sent} requests, {limited}×429"


def run_demo(
    *,
    orders: int = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
    speed: float = DEFAULT_SPEED,
    out: IO[str] | None = None,
    live: bool | None = None,
) -> DemoResult:
    """Run the demo on a compressed clock and print a progress display and the summary.

    ``live`` picks the ``rich`` display (None: when rich is installed and ``out`` is a
    terminal); otherwise a plain progress line is printed every 150 simulated seconds (when
    something moved), so that the same seed prints the same output (but for the wall time).
    """
    stream = sys.stdout if out is None else out
    loop_speed = float(speed)
    compressed_loop(loop_speed).close()  # validate before printing anything
    use_rich = has_rich() and stream.isatty() if live is None else live
    print(
        f"certpoll demo: {orders} renewals over {', '.join(CAS)} against the simulated CA "
        f"(realistic profile, seed {seed}); time runs {loop_speed:g}x faster",
        file=stream,
        flush=True,
    )
    with asyncio.Runner(loop_factory=lambda: compressed_loop(loop_speed)) as runner:
        if use_rich:
            result = runner.run(_run_rich(orders=orders, seed=seed, out=stream))
        else:
            printed = [""]

            def plain(tallies: Sequence[Tally]) -> None:
                line = _progress_line(tallies)
                if line != printed[0]:  # the long tail of an hour's polls changes little
                    printed[0] = line
                    print(line, file=stream, flush=True)

            result = runner.run(run_batch(orders=orders, seed=seed, on_tick=plain, tick=_TICK))
    print(render_summary(result), file=stream, flush=True)
    return result


async def _run_rich(*, orders: int, seed: int, out: IO[str]) -> DemoResult:
    latest: list[Sequence[Tally]] = [()]

    def on_tick(tallies: Sequence[Tally]) -> None:
        latest[0] = tallies
        redraw()

    def render() -> Table:
        rows = _rows(latest[0], final=False)
        return rich_table(_COLUMNS, rows, title="certpoll demo: renewals in flight")

    with live_view(render, out) as redraw:
        return await run_batch(orders=orders, seed=seed, on_tick=on_tick, tick=_TICK)


def demo_orders_from_env(default: int = DEFAULT_ORDERS) -> int:
    """``CERTPOLL_DEMO_ORDERS`` when set (for quick runs), else ``default``."""
    raw = os.environ.get("CERTPOLL_DEMO_ORDERS", "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"CERTPOLL_DEMO_ORDERS must be a positive integer, not {raw!r}") from exc
    if value < 1:
        raise ConfigError(f"CERTPOLL_DEMO_ORDERS must be a positive integer, not {raw!r}")
    return value
