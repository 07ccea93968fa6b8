"""The simulated CA: one plain ASGI application speaking the four CA APIs.

This module holds the plumbing every CA shares (routing by mount, fault windows, counters,
the clock); the orders live in :mod:`._orders` and each CA's API in :mod:`._cas`.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from .._errors import ConfigError
from .._models import CAName
from .._wire import DIGICERT, GLOBALSIGN, MOUNTS
from ._cas._base import FAULT_WINDOW, SimulatedService
from ._cas.digicert import DigiCertService
from ._cas.entrust import EntrustService
from ._cas.globalsign import GlobalSignService
from ._cas.sectigo import SectigoService
from ._http import (
    MAX_BODY_BYTES,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    json_response,
    problem_json,
    request_of,
)
from ._orders import Credentials, Order, OrderBook, OrderInfo
from ._pki import TestPKI
from ._scenario import Fault, OrderScript, Profile

__all__ = ["BaseURLs", "SimulatedCA"]


@dataclass(frozen=True, slots=True)
class BaseURLs:
    """The base URL of each simulated CA, to put in the connectors' settings."""

    digicert: str
    sectigo: str
    entrust: str
    globalsign: str

    def __getitem__(self, ca: CAName) -> str:
        value: str = getattr(self, ca)
        return value


def _split_mount(path: str) -> tuple[CAName | None, str]:
    for ca, prefix in MOUNTS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return ca, path[len(prefix) :]
    return None, path


class SimulatedCA:
    """A fake of DigiCert, Sectigo, Entrust CA Gateway and GlobalSign HVCA: an ASGI app.

    Use it in-process (``httpx.AsyncClient(transport=httpx.ASGITransport(app=sim))``, or
    :meth:`client`), or served on 127.0.0.1 with :func:`certpoll.testing.serve`.

    ``profile`` scripts each new order and adds CA-wide faults (default: every order is
    issued at once). ``credentials`` are what the accounts accept. ``clock`` returns
    seconds (default: the running event loop's ``time()``, so a virtual-time loop drives
    the simulator too); ``speed`` makes simulated time run that many times faster than
    ``clock``; ``sleep`` waits real (clock) seconds for latency faults (default
    ``asyncio.sleep``). ``digicert_rate_limits`` are DigiCert's documented limits per API key
    (``()`` switches them off). ``token_lifetime`` is the life of a GlobalSign token in
    simulated seconds.

    Counters: :attr:`requests` (every request), :attr:`requests_by_route` (e.g.
    ``"digicert.status"``), :attr:`responses_by_status`, :attr:`throttled` (429s sent), and
    per order :meth:`order`.
    """

    profile: Profile
    credentials: Credentials
    pki: TestPKI
    speed: float
    #: Every request the simulator saw.
    requests: int
    #: Requests per route, e.g. ``"digicert.submit"``, ``"sectigo.collect"``, ``"unknown"``.
    requests_by_route: Counter[str]
    #: Responses per HTTP status code.
    responses_by_status: Counter[int]
    #: HTTP 429 answers sent (DigiCert's limits, faults and scripts together).
    throttled: int

    def __init__(
        self,
        *,
        profile: Profile | None = None,
        credentials: Credentials | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        speed: float = 1.0,
        digicert_rate_limits: tuple[tuple[int, float], ...] = DIGICERT.RATE_LIMITS,
        token_lifetime: float = GLOBALSIGN.TOKEN_LIFETIME,
        pki: TestPKI | None = None,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ConfigError(f"speed must be a positive number, not {speed!r}")
        if not (math.isfinite(token_lifetime) and token_lifetime > 0):
            raise ConfigError(f"token_lifetime must be positive seconds, not {token_lifetime!r}")
        for limit, window in digicert_rate_limits:
            if limit < 1 or not (math.isfinite(window) and window > 0):
                raise ConfigError("each DigiCert rate limit needs >= 1 request per positive period")
        self.profile = Profile() if profile is None else profile
        self.credentials = Credentials() if credentials is None else credentials
        self.pki = TestPKI() if pki is None else pki
        self.speed = speed
        self._clock = clock
        self._sleep = asyncio.sleep if sleep is None else sleep
        # One seeded source for both the profile's picks and the faults' coin flips.
        self._rng = random.Random(self.profile.seed)
        self._epoch: float | None = None
        self._faults: list[Fault] = list(self.profile.faults)
        self._book = OrderBook(profile=self.profile, pki=self.pki, rng=self._rng, now=self.now)
        book, credentials, now = self._book, self.credentials, self.now
        self._digicert = DigiCertService(
            book=book, credentials=credentials, now=now, rate_limits=digicert_rate_limits
        )
        self._globalsign = GlobalSignService(
            book=book, credentials=credentials, now=now, token_lifetime=token_lifetime
        )
        self._services: dict[CAName, SimulatedService] = {
            "digicert": self._digicert,
            "sectigo": SectigoService(book=book, credentials=credentials, now=now),
            "entrust": EntrustService(book=book, credentials=credentials, now=now),
            "globalsign": self._globalsign,
        }
        self.requests = 0
        self.requests_by_route = Counter()
        self.responses_by_status = Counter()
        self.throttled = 0

    def __repr__(self) -> str:
        return f"SimulatedCA(orders={len(self._book)}, requests={self.requests})"

    @property
    def digicert_rate_limits(self) -> tuple[tuple[int, float], ...]:
        """DigiCert's limits per API key: (requests, per seconds); ``()`` when off."""
        return self._digicert.rate_limits

    @property
    def token_lifetime(self) -> float:
        """The life of a GlobalSign token, in simulated seconds."""
        return self._globalsign.token_lifetime

    @property
    def limits_exceeded(self) -> int:
        """Of the 429s, those a client earned by breaking DigiCert's rate limits (not scripted)."""
        return self._digicert.limits_exceeded

    # -- time ---------------------------------------------------------------------------

    def _raw_now(self) -> float:
        base = asyncio.get_running_loop().time() if self._clock is None else self._clock()
        return base * self.speed

    def now(self) -> float:
        """Simulated seconds since the :attr:`epoch`; the first call sets the epoch."""
        raw = self._raw_now()
        if self._epoch is None:
            self._epoch = raw
        return raw - self._epoch

    @property
    def epoch(self) -> float | None:
        """The simulated instant fault windows count from: the first request (or ``now()``)."""
        return self._epoch

    # -- scripting ----------------------------------------------------------------------

    def script_next(self, script: OrderScript, *, ca: CAName | None = None, count: int = 1) -> None:
        """The next ``count`` orders (of ``ca``, or of any CA) follow ``script``."""
        self._book.script_next(script, ca=ca, count=count)

    def script_common_name(self, common_name: str, script: OrderScript) -> None:
        """Every order for ``common_name`` follows ``script`` (wins over the queue)."""
        self._book.script_common_name(common_name, script)

    def add_fault(self, fault: Fault) -> None:
        """Add a CA-wide fault window (its ``start`` counts from the epoch)."""
        self._faults.append(fault)

    def expire_tokens(self) -> None:
        """Expire every GlobalSign access token now: the next use of one gets HTTP 401."""
        self._globalsign.expire_tokens()

    def _new_order(
        self,
        ca: CAName,
        *,
        common_name: str,
        dns_names: Iterable[str],
        public_key: CertificatePublicKeyTypes,
    ) -> Order:
        """An order made without a request (bench set-up makes thousands this way)."""
        return self._services[ca].new_order(
            common_name=common_name, dns_names=dns_names, public_key=public_key
        )

    # -- what tests look at -------------------------------------------------------------

    @property
    def order_count(self) -> int:
        """How many orders were submitted."""
        return len(self._book)

    def order(self, ca: CAName, order_id: str) -> OrderInfo:
        """What the simulator knows about an order (``KeyError`` if there is none).

        An Entrust order is found by its enrollment id or by its serial (hex), the two ids
        the connector may hold.
        """
        order = self._services[ca].find(str(order_id))
        if order is None:
            raise KeyError((ca, order_id))
        return self._book.info(order)

    def base_urls(self, origin: str = "http://certpoll-sim") -> BaseURLs:
        """Each CA's base URL under ``origin`` (in-process, any origin works)."""
        origin = origin.rstrip("/")
        return BaseURLs(**{ca: origin + prefix for ca, prefix in MOUNTS.items()})

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` wired to this simulator in-process (no sockets)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self), **kwargs)  # type: ignore[arg-type]

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (HTTP and lifespan)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        too_large = False
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if isinstance(chunk, bytes) and not too_large:
                body += chunk
                too_large = len(body) > MAX_BODY_BYTES
            if not message.get("more_body", False):
                break
        request = request_of(scope, body)
        if too_large:
            response = json_response(413, {"description": "request body too large"})
            self.requests += 1
            self.requests_by_route["unknown"] += 1
        else:
            response = await self._handle(request)
        self.responses_by_status[response.status] += 1
        if response.status == 429:
            self.throttled += 1
        headers = [(b"content-length", str(len(response.body)).encode())]
        if response.content_type is not None:
            headers.append((b"content-type", response.content_type.encode()))
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _handle(self, request: Request) -> Response:
        self.requests += 1
        ca, path = _split_mount(request.path)
        service = None if ca is None else self._services[ca]
        route, match = (None, None) if service is None else service.match(request.method, path)
        self.requests_by_route["unknown" if route is None else route.name] += 1
        if service is None or route is None or match is None:
            if service is not None and route is not None:
                return service.error(405, "method not allowed")
            if service is not None:
                return service.error(404, "no such resource")
            return problem_json(404, None, "no such resource")
        now = self.now()
        latency = 0.0
        fault: Fault | None = None
        for candidate in self._faults:
            if candidate.active(now, service.name) and (
                candidate.probability >= 1.0 or self._rng.random() < candidate.probability
            ):
                latency += candidate.latency
                if fault is None and candidate.status is not None:
                    fault = candidate
        if latency > 0:
            await self._sleep(latency / self.speed)
        if fault is not None and fault.status is not None:
            return service.error(fault.status, FAULT_WINDOW, retry_after=fault.retry_after)
        denied = service.admit(request, route)
        if denied is not None:
            return denied
        return route.handler(request, match)
