"""The simulated CA: one plain ASGI application speaking the four CA APIs.

Per-order state is a small slotted record; no task runs per order. Everything an order
does is computed from the simulator's clock when a request looks at it, and its
certificate is signed the first time someone sees it issued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import math
import random
import re
import secrets
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

from .._errors import ConfigError
from .._models import CAName
from .._wire import DIGICERT, ENTRUST, GLOBALSIGN, MOUNTS, SECTIGO
from ._pki import BadCSR, TestPKI, csr_names, load_csr, pem, public_key_from_pem
from ._scenario import BodyFault, Fault, OrderScript, Profile

__all__ = ["BaseURLs", "Credentials", "OrderInfo", "SimulatedCA"]

Scope = dict[str, object]
Message = dict[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Set by the server in front of the app: True when the TLS peer sent a verified client
#: certificate, False when it cannot have. Absent (in-process): the transport is trusted.
CLIENT_CERT_SCOPE_KEY: Final = "certpoll.client_cert"

MAX_BODY_BYTES: Final = 1024 * 1024

OrderPhase = Literal["approval", "processing", "issued", "rejected", "revoked"]

_MTLS_CAS: Final = frozenset({"entrust", "globalsign"})
_REASONS: Final = {
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """What the simulated accounts accept. Use your own test values in your tests."""

    digicert_api_key: str = "sim-digicert-api-key"
    digicert_org_id: int = 112233
    sectigo_customer_uri: str = "sim-customer"
    sectigo_login: str = "sim-login"
    sectigo_password: str = "sim-password"  # noqa: S105 - a simulator's test value
    sectigo_org_id: int = 4455
    sectigo_cert_type: int = 77
    entrust_ca_id: str = "SIMCA1"
    #: When set, enrollments must name this profile.
    entrust_profile_id: str | None = None
    globalsign_api_key: str = "sim-globalsign-api-key"
    globalsign_api_secret: str = "sim-globalsign-api-secret"  # noqa: S105
    #: GlobalSign access tokens start with this.
    globalsign_token_prefix: str = "sim-token"  # noqa: S105

    def __repr__(self) -> str:
        return "Credentials(...)"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderInfo:
    """What the simulator knows about one order, at the time you asked.

    ``certificate`` is the leaf it issued (None until issued); ``serial`` its serial
    number, chosen at submission. ``requests`` counts the requests about this order
    (status, download/collect, revoke), the submission excluded.
    """

    ca: CAName
    order_id: str
    common_name: str
    dns_names: tuple[str, ...]
    script: OrderScript
    state: OrderPhase
    serial: int
    certificate_id: str
    certificate: x509.Certificate | None
    revocation_reason: str | None
    requests: int


@dataclass(slots=True, eq=False)
class _Order:
    ca: CAName
    order_id: str
    created: float
    script: OrderScript
    common_name: str
    dns_names: tuple[str, ...]
    public_key: CertificatePublicKeyTypes | None
    serial: int
    certificate_id: str
    certificate: x509.Certificate | None = None
    revoked: str | None = None
    requests: int = 0
    polls: int = 0
    #: The form the client asked the certificate in (Entrust's requiredFormat).
    answer_format: str | None = None


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    origin: str
    client_cert: bool | None

    def json(self) -> dict[str, object] | None:
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, value: object, *, headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    return _Response(status, json.dumps(value).encode(), headers=headers)


Handler = Callable[[_Request, re.Match[str]], _Response]


@dataclass(frozen=True, slots=True)
class _Route:
    ca: CAName
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    #: Status routes honour the per-order ``errors`` script.
    status_route: bool = False


def _pattern(template: str) -> re.Pattern[str]:
    """``/order/certificate/{order_id}`` as a regex; ``*_id`` of DigiCert/Sectigo is digits."""

    def group(match: re.Match[str]) -> str:
        name = match.group(1)
        digits = name in ("order_id", "certificate_id", "ssl_id")
        return f"(?P<{name}>{'[0-9]+' if digits else '[^/]+'})"

    return re.compile(re.sub(r"\{(\w+)\}", group, template) + "$")


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
        self.digicert_rate_limits = digicert_rate_limits
        self.token_lifetime = token_lifetime
        self._clock = clock
        self._sleep = asyncio.sleep if sleep is None else sleep
        self._rng = random.Random(self.profile.seed)
        self._epoch: float | None = None
        self._faults: list[Fault] = list(self.profile.faults)
        self._queued: deque[tuple[CAName | None, OrderScript]] = deque()
        self._by_name: dict[str, OrderScript] = {}
        self._orders: dict[tuple[CAName, str], _Order] = {}
        self._by_certificate: dict[tuple[CAName, str], _Order] = {}
        self._by_serial: dict[tuple[CAName, int], _Order] = {}
        self._next_id = 100001
        self._windows: dict[str, deque[float]] = {}
        self._tokens: dict[str, float] = {}
        #: Every request the simulator saw.
        self.requests = 0
        #: Requests per route, e.g. ``"digicert.submit"``, ``"sectigo.collect"``, ``"unknown"``.
        self.requests_by_route: Counter[str] = Counter()
        #: Responses per HTTP status code.
        self.responses_by_status: Counter[int] = Counter()
        #: HTTP 429 answers sent (DigiCert's limits, faults and scripts together).
        self.throttled = 0
        #: Of those, the 429s a client earned by breaking DigiCert's rate limits (not scripted).
        self.limits_exceeded = 0
        self._routes = self._build_routes()

    def __repr__(self) -> str:
        return f"SimulatedCA(orders={len(self._orders)}, requests={self.requests})"

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
        if count < 1:
            raise ConfigError(f"count must be at least 1, not {count!r}")
        self._queued.extend([(ca, script)] * count)

    def script_common_name(self, common_name: str, script: OrderScript) -> None:
        """Every order for ``common_name`` follows ``script`` (wins over the queue)."""
        self._by_name[common_name.lower()] = script

    def add_fault(self, fault: Fault) -> None:
        """Add a CA-wide fault window (its ``start`` counts from the epoch)."""
        self._faults.append(fault)

    def expire_tokens(self) -> None:
        """Expire every GlobalSign access token now: the next use of one gets HTTP 401."""
        self._tokens.clear()

    def _script_for(self, ca: CAName, common_name: str) -> OrderScript:
        named = self._by_name.get(common_name.lower())
        if named is not None:
            return named
        for index, (wanted, script) in enumerate(self._queued):
            if wanted is None or wanted == ca:
                del self._queued[index]
                return script
        return self.profile.pick(self._rng, ca)

    # -- what tests look at -------------------------------------------------------------

    @property
    def order_count(self) -> int:
        """How many orders were submitted."""
        return len(self._orders)

    def order(self, ca: CAName, order_id: str) -> OrderInfo:
        """What the simulator knows about an order (``KeyError`` if there is none).

        An Entrust order is found by its enrollment id or by its serial (hex), the two ids
        the connector may hold.
        """
        order = self._orders.get((ca, str(order_id)))
        if order is None and ca == "entrust":
            with contextlib.suppress(ValueError):
                order = self._by_serial.get((ca, int(order_id, 16)))
        if order is None:
            raise KeyError((ca, order_id))
        state = self._phase(order, self.now())
        return OrderInfo(
            ca=order.ca,
            order_id=order.order_id,
            common_name=order.common_name,
            dns_names=order.dns_names,
            script=order.script,
            state=state,
            serial=order.serial,
            certificate_id=order.certificate_id,
            certificate=order.certificate,
            revocation_reason=order.revoked,
            requests=order.requests,
        )

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
        request = _request_of(scope, body)
        if too_large:
            response = _json(413, {"description": "request body too large"})
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

    async def _handle(self, request: _Request) -> _Response:
        self.requests += 1
        ca, path = _split_mount(request.path)
        route, match = self._route(ca, request.method, path)
        self.requests_by_route["unknown" if route is None else route.name] += 1
        if ca is None or route is None or match is None:
            if route is not None:
                return self._error(route.ca, 405, "method not allowed")
            return self._error(ca, 404, "no such resource")
        now = self.now()
        latency = 0.0
        fault: Fault | None = None
        for candidate in self._faults:
            if candidate.active(now, ca) and (
                candidate.probability >= 1.0 or self._rng.random() < candidate.probability
            ):
                latency += candidate.latency
                if fault is None and candidate.status is not None:
                    fault = candidate
        if latency > 0:
            await self._sleep(latency / self.speed)
        if fault is not None and fault.status is not None:
            return self._error(ca, fault.status, "fault window", retry_after=fault.retry_after)
        denied = self._authenticate(ca, route, request)
        if denied is not None:
            return denied
        return route.handler(request, match)

    def _route(
        self, ca: CAName | None, method: str, path: str
    ) -> tuple[_Route | None, re.Match[str] | None]:
        if ca is None:
            return None, None
        wrong_method: _Route | None = None
        for route in self._routes:
            if route.ca != ca:
                continue
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method:
                return route, match
            wrong_method = route
        return wrong_method, None

    def _build_routes(self) -> list[_Route]:
        def r(ca: CAName, method: str, template: str, name: str, handler: Handler) -> _Route:
            return _Route(ca, method, _pattern(template), f"{ca}.{name}", handler, name == "status")

        return [
            r("digicert", "POST", DIGICERT.SUBMIT, "submit", self._dc_submit),
            r("digicert", "GET", DIGICERT.STATUS, "status", self._dc_status),
            r("digicert", "GET", DIGICERT.DOWNLOAD, "download", self._dc_download),
            r("digicert", "PUT", DIGICERT.REVOKE, "revoke", self._dc_revoke),
            r("sectigo", "POST", SECTIGO.ENROLL, "enroll", self._sc_enroll),
            r("sectigo", "GET", SECTIGO.STATUS, "status", self._sc_status),
            r("sectigo", "GET", SECTIGO.COLLECT, "collect", self._sc_collect),
            r("sectigo", "GET", SECTIGO.COLLECT + "/{format}", "collect", self._sc_collect),
            r("sectigo", "POST", SECTIGO.REVOKE, "revoke", self._sc_revoke),
            r("entrust", "POST", ENTRUST.ENROLL, "enroll", self._en_enroll),
            r("entrust", "GET", ENTRUST.STATUS, "status", self._en_status),
            r("entrust", "GET", ENTRUST.CERTIFICATE, "status", self._en_certificate),
            r("entrust", "POST", ENTRUST.ACTIONS, "revoke", self._en_actions),
            r("globalsign", "POST", GLOBALSIGN.LOGIN, "login", self._gs_login),
            r("globalsign", "POST", GLOBALSIGN.SUBMIT, "submit", self._gs_submit),
            r("globalsign", "GET", GLOBALSIGN.CERTIFICATE, "status", self._gs_status),
            r("globalsign", "PATCH", GLOBALSIGN.CERTIFICATE, "revoke", self._gs_revoke),
            r("globalsign", "GET", GLOBALSIGN.TRUSTCHAIN, "trustchain", self._gs_trustchain),
        ]

    # -- shared machinery -----------------------------------------------------------------

    def _error(
        self,
        ca: CAName | None,
        status: int,
        message: str,
        *,
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> _Response:
        """An error in ``ca``'s own shape."""
        headers: tuple[tuple[str, str], ...] = ()
        if retry_after is not None:
            headers = (("Retry-After", str(math.ceil(retry_after))),)
        if status == 429 and ca == "digicert":
            code, message = DIGICERT.RATE_LIMIT_CODE, DIGICERT.RATE_LIMIT_MESSAGE
        message = _REASONS.get(status, message) if message == "fault window" else message
        body: object
        if ca == "digicert":
            body = {"errors": [{"code": code or "error", "message": message}]}
        elif ca == "sectigo":
            body = {"code": code if isinstance(code, int) else 0, "description": message}
        elif ca == "entrust":
            body = {
                "type": ENTRUST.ERROR_TYPE,
                "error": {"code": code or status, "message": message},
            }
        else:
            # HVCA's errors are problem+json with a description.
            content = json.dumps({"code": code or status, "description": message}).encode()
            return _Response(status, content, "application/problem+json", headers)
        return _json(status, body, headers=headers)

    def _authenticate(self, ca: CAName, route: _Route, request: _Request) -> _Response | None:
        creds = self.credentials
        h = request.headers
        if ca in _MTLS_CAS and request.client_cert is False:
            return self._error(ca, 403, "a client certificate is required")
        if ca == "digicert":
            key = h.get(DIGICERT.API_KEY_HEADER.lower(), "")
            if not _same(key, creds.digicert_api_key):
                return self._error(ca, 401, "The specified API key is invalid.", code="invalid_key")
            if not self._admit(key):
                self.limits_exceeded += 1
                return self._error(ca, 429, DIGICERT.RATE_LIMIT_MESSAGE)
        elif ca == "sectigo":
            if not (
                _same(h.get(SECTIGO.CUSTOMER_URI_HEADER.lower(), ""), creds.sectigo_customer_uri)
                & _same(h.get(SECTIGO.LOGIN_HEADER.lower(), ""), creds.sectigo_login)
                & _same(h.get(SECTIGO.PASSWORD_HEADER.lower(), ""), creds.sectigo_password)
            ):
                return self._error(ca, 401, "Unknown user", code=SECTIGO.UNKNOWN_USER)
        elif ca == "globalsign" and route.name != "globalsign.login":
            token = h.get("authorization", "")
            scheme, _, value = token.partition(" ")
            expiry = self._tokens.get(value) if scheme.lower() == "bearer" else None
            if expiry is None or expiry <= self.now():
                return self._error(ca, 401, "invalid or expired access token", code=401)
        return None

    def _admit(self, key: str) -> bool:
        """DigiCert's rolling windows; only admitted requests count against them."""
        if not self.digicert_rate_limits:
            return True
        now = self.now()
        times = self._windows.setdefault(key, deque())
        longest = max(window for _, window in self.digicert_rate_limits)
        while times and times[0] <= now - longest:
            times.popleft()
        for limit, window in self.digicert_rate_limits:
            # Sorted times: the window is full when the limit-th latest one is inside it.
            if len(times) >= limit and times[-limit] > now - window:
                return False
        times.append(now)
        return True

    def _new_order(
        self,
        ca: CAName,
        *,
        common_name: str,
        dns_names: Iterable[str],
        public_key: CertificatePublicKeyTypes,
        order_id: str | None = None,
    ) -> _Order:
        number = self._next_id
        self._next_id += 1
        serial = x509.random_serial_number()
        names = tuple(dict.fromkeys(n.lower() for n in (common_name, *dns_names) if n))
        order = _Order(
            ca=ca,
            order_id=str(number) if order_id is None else order_id,
            created=self.now(),
            script=self._script_for(ca, common_name),
            common_name=common_name,
            dns_names=names,
            public_key=public_key,
            serial=serial,
            certificate_id=str(number + 100000000) if ca == "digicert" else str(number),
        )
        if ca == "globalsign":
            order.order_id = order.certificate_id = _hex(serial)
        self._orders[(ca, order.order_id)] = order
        self._by_certificate[(ca, order.certificate_id)] = order
        self._by_serial[(ca, serial)] = order
        return order

    def _phase(self, order: _Order, now: float) -> OrderPhase:
        if order.revoked is not None:
            return "revoked"
        elapsed = now - order.created
        script = order.script
        if elapsed < script.approval_for:
            return "approval"
        if elapsed < script.ready_after:
            return "processing"
        if script.reject:
            return "rejected"
        if order.certificate is None:
            assert order.public_key is not None  # dropped only once the leaf exists
            order.certificate = self.pki.issue(
                public_key=order.public_key,
                common_name=order.common_name,
                dns_names=order.dns_names,
                serial=order.serial,
            )
            order.public_key = None
        return "issued"

    def _lookup(self, ca: CAName, order_id: str) -> _Order | None:
        order = self._orders.get((ca, order_id))
        if order is not None:
            order.requests += 1
        return order

    def _by_serial_text(self, ca: CAName, text: str) -> _Order | None:
        """A certificate by serial: decimal, or hex (with or without colons)."""
        candidates: list[int] = []
        if text.isdigit():
            candidates.append(int(text))
        with contextlib.suppress(ValueError):
            candidates.append(int(text.replace(":", ""), 16))
        for serial in candidates:
            order = self._by_serial.get((ca, serial))
            if order is not None:
                order.requests += 1
                return order
        return None

    def _scripted(self, order: _Order, answer: Callable[[], _Response]) -> _Response:
        """The order's scripted error for this status request, or the real answer."""
        index = order.polls
        order.polls += 1
        errors = order.script.errors
        if index >= len(errors):
            return answer()
        error = errors[index]
        if isinstance(error, BodyFault):
            return _broken(answer(), error)
        return self._error(order.ca, error, "scripted error", retry_after=order.script.retry_after)

    def _leaf_pem(self, order: _Order) -> str:
        assert order.certificate is not None
        return pem(order.certificate)

    # -- DigiCert -----------------------------------------------------------------------

    _DC_WORDS: Final[dict[OrderPhase, str]] = {
        "approval": DIGICERT.NEEDS_APPROVAL,
        "processing": DIGICERT.PENDING,
        "issued": DIGICERT.ISSUED,
        "rejected": DIGICERT.REJECTED,
        "revoked": DIGICERT.REVOKED,
    }

    def _dc_bad(self, code: str, message: str) -> _Response:
        return self._error("digicert", 400, message, code=code)

    def _dc_submit(self, request: _Request, match: re.Match[str]) -> _Response:
        body = request.json()
        if body is None:
            return self._dc_bad("invalid_json", "The request body is not a JSON object.")
        certificate = body.get(DIGICERT.CERTIFICATE)
        organization = body.get(DIGICERT.ORGANIZATION)
        if not isinstance(certificate, dict):
            return self._dc_bad("missing_param", "certificate is required.")
        common_name = certificate.get(DIGICERT.COMMON_NAME)
        csr_text = certificate.get(DIGICERT.CSR)
        dns_names = certificate.get(DIGICERT.DNS_NAMES, [])
        if not isinstance(common_name, str) or not common_name.strip():
            return self._dc_bad("missing_param", "certificate.common_name is required.")
        if not isinstance(csr_text, str):
            return self._dc_bad("missing_param", "certificate.csr is required.")
        if not _str_list(dns_names):
            return self._dc_bad("invalid_param", "certificate.dns_names must be a list of names.")
        org_id = organization.get("id") if isinstance(organization, dict) else None
        if type(org_id) is not int:
            return self._dc_bad("missing_param", "organization.id is required.")
        if org_id != self.credentials.digicert_org_id:
            return self._dc_bad("invalid_organization", "Organization not found.")
        try:
            csr = load_csr(csr_text)
        except BadCSR:
            return self._dc_bad("invalid_csr", "The CSR is invalid.")
        assert isinstance(dns_names, list)
        order = self._new_order(
            "digicert", common_name=common_name, dns_names=dns_names, public_key=csr.public_key()
        )
        phase = self._phase(order, self.now())
        answer: dict[str, object] = {DIGICERT.ID: int(order.order_id)}
        if phase != "issued":
            answer[DIGICERT.REQUESTS] = [{"id": int(order.order_id), "status": "pending"}]
            return _json(201, answer)
        # Issued at once: the certificate and its chain come in the order's own answer,
        # one PEM per entry with CRLF line ends, and there is no "status".
        assert order.certificate is not None
        entries = [
            (order.common_name, self._leaf_pem(order)),
            *((_common_name(c), pem(c)) for c in self.pki.chain),
        ]
        answer[DIGICERT.REQUESTS] = [{"id": int(order.order_id), "status": "approved"}]
        answer[DIGICERT.CERTIFICATE_ID] = int(order.certificate_id)
        answer[DIGICERT.CERTIFICATE_CHAIN] = [
            {"subject_common_name": name, "pem": text.replace("\n", "\r\n")}
            for name, text in entries
        ]
        return _json(201, answer)

    def _dc_status(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._lookup("digicert", match["order_id"])
        if order is None:
            return self._error("digicert", 404, "Order not found.", code="not_found")

        def answer() -> _Response:
            phase = self._phase(order, self.now())
            certificate: dict[str, object] = {
                "id": int(order.certificate_id),
                "common_name": order.common_name,
                "dns_names": list(order.dns_names),
            }
            if order.certificate is not None:
                certificate[DIGICERT.SERIAL_NUMBER] = _hex(order.serial)
                certificate["valid_from"] = order.certificate.not_valid_before_utc.isoformat()
                certificate["valid_till"] = order.certificate.not_valid_after_utc.isoformat()
            return _json(
                200,
                {
                    DIGICERT.ID: int(order.order_id),
                    DIGICERT.STATUS_FIELD: self._DC_WORDS[phase],
                    DIGICERT.CERTIFICATE: certificate,
                    DIGICERT.ORGANIZATION: {"id": self.credentials.digicert_org_id},
                },
            )

        return self._scripted(order, answer)

    def _dc_download(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._by_certificate.get(("digicert", match["certificate_id"]))
        if order is None:
            return self._error("digicert", 404, "Certificate not found.", code="not_found")
        order.requests += 1
        if self._phase(order, self.now()) not in ("issued", "revoked"):
            return self._error("digicert", 404, "Certificate not issued.", code="not_found")
        bundle = self._leaf_pem(order) + self.pki.chain_pem
        return _Response(200, bundle.encode(), "application/x-pem-file")

    def _dc_revoke(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._by_certificate.get(("digicert", match["certificate_id"]))
        if order is None:
            return self._error("digicert", 404, "Certificate not found.", code="not_found")
        order.requests += 1
        if request.body.strip() and request.json() is None:
            return self._dc_bad("invalid_json", "The request body is not a JSON object.")
        if self._phase(order, self.now()) != "issued":
            return self._dc_bad("invalid_status", "Only issued certificates can be revoked.")
        body = request.json() or {}
        reason = body.get("revocation_reason", body.get("reason", "unspecified"))
        order.revoked = str(reason)
        if body.get("skip_approval") is True:
            return _Response(204, content_type=None)
        # Without skip_approval DigiCert answers with the revoke request it now holds.
        return _json(
            201,
            {
                "id": order.requests,
                "date": "2016-02-10T17:06:15+00:00",
                "type": "revoke",
                "status": "pending",
                "comments": str(body.get("comments", ""))[:512],
            },
        )

    # -- Sectigo ------------------------------------------------------------------------

    _SC_WORDS: Final[dict[OrderPhase, str]] = {
        "approval": SECTIGO.REQUESTED,
        "processing": SECTIGO.APPLIED,
        "issued": SECTIGO.ISSUED,
        "rejected": SECTIGO.REJECTED,
        "revoked": SECTIGO.REVOKED,
    }

    def _sc_bad(self, code: int, message: str) -> _Response:
        return self._error("sectigo", 400, message, code=code)

    def _sc_enroll(self, request: _Request, match: re.Match[str]) -> _Response:
        body = request.json()
        if body is None:
            return self._sc_bad(SECTIGO.INVALID_REQUEST, "Invalid request body")
        creds = self.credentials
        for field, expected in (
            (SECTIGO.ORG_ID, creds.sectigo_org_id),
            (SECTIGO.CERT_TYPE, creds.sectigo_cert_type),
        ):
            value = body.get(field)
            if type(value) is not int or value != expected:
                return self._sc_bad(SECTIGO.INVALID_REQUEST, f"Invalid or missing '{field}'")
        term = body.get(SECTIGO.TERM)
        if type(term) is not int or term not in SECTIGO.TERMS:
            return self._sc_bad(SECTIGO.INVALID_TERM, "Invalid term")
        alt = body.get(SECTIGO.SUBJ_ALT_NAMES, "")
        if not isinstance(alt, str):
            return self._sc_bad(SECTIGO.INVALID_REQUEST, "Invalid 'subjAltNames'")
        csr_text = body.get(SECTIGO.CSR)
        try:
            csr = load_csr(csr_text if isinstance(csr_text, str) else "")
            common_name, csr_dns = csr_names(csr)
            dns_names = [*csr_dns, *(n.strip() for n in alt.split(",") if n.strip())]
            common_name = common_name or (dns_names[0] if dns_names else None)
            if common_name is None:
                raise BadCSR("the CSR names nothing")
        except BadCSR:
            return self._sc_bad(SECTIGO.INVALID_CSR, "CSR is not valid")
        order = self._new_order(
            "sectigo", common_name=common_name, dns_names=dns_names, public_key=csr.public_key()
        )
        self._phase(order, self.now())
        return _json(
            200, {SECTIGO.SSL_ID: int(order.order_id), SECTIGO.RENEW_ID: secrets.token_hex(8)}
        )

    def _sc_order(self, match: re.Match[str]) -> _Order | _Response:
        order = self._lookup("sectigo", str(int(match["ssl_id"])))
        if order is None:
            return self._error("sectigo", 404, "Certificate not found", code=SECTIGO.NOT_FOUND)
        return order

    def _sc_status(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._sc_order(match)
        if isinstance(order, _Response):
            return order

        def answer() -> _Response:
            phase = self._phase(order, self.now())
            body: dict[str, object] = {
                SECTIGO.SSL_ID: int(order.order_id),
                SECTIGO.COMMON_NAME: order.common_name,
                SECTIGO.STATUS_FIELD: self._SC_WORDS[phase],
                "subjectAlternativeNames": ",".join(order.dns_names),
                "orgId": self.credentials.sectigo_org_id,
                "certType": self.credentials.sectigo_cert_type,
            }
            if order.certificate is not None:
                body[SECTIGO.SERIAL_NUMBER] = _hex(order.serial)
            return _json(200, body)

        return self._scripted(order, answer)

    def _sc_collect(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._sc_order(match)
        if isinstance(order, _Response):
            return order
        groups = match.groupdict()
        fmt = groups.get("format") or request.query.get("format", "base64")
        now = self.now()
        phase = self._phase(order, now)
        if phase in ("approval", "processing"):
            return self._sc_bad(
                SECTIGO.BEING_PROCESSED, "The request is being processed by Sectigo."
            )
        if phase == "rejected":
            return self._sc_bad(SECTIGO.NOT_ISSUED, "SSL state is not 'ISSUED'")
        if phase == "revoked":
            return self._sc_bad(SECTIGO.REVOKED_CANNOT_DOWNLOAD, "Certificate has been revoked")
        if now - order.created < order.script.ready_after + order.script.collect_not_ready_for:
            return self._sc_bad(SECTIGO.NOT_COLLECTABLE, "Certificate is not collectable.")
        assert order.certificate is not None
        leaf = order.certificate
        chain = list(self.pki.chain)  # intermediate, root
        text: bytes
        if fmt in SECTIGO.FORMATS_PEM:
            certificates = {
                # "Certificate (w/ chain)": root first, the leaf last.
                "x509": [*reversed(chain), leaf],
                "pem": [*reversed(chain), leaf],
                # "Certificate (w/ issuer after)": the one order SCM documents.
                "pemia": [leaf, *chain],
                "x509CO": [leaf],
                "pemco": [leaf],
                # "Root/Intermediate(s) only" and "Intermediate(s)/Root only".
                "x509IO": list(reversed(chain)),
                "x509IOR": chain,
            }[fmt]
            if order.script.awkward:
                # Root first whatever the format says, as the x509 bundle is.
                certificates = [c for c in [*reversed(chain), leaf] if c in certificates]
            text = "".join(pem(c) for c in certificates).replace("\n", "\r\n").encode()
        elif fmt == "base64":
            text = pkcs7.serialize_certificates([leaf, *chain], Encoding.PEM)
        elif fmt == "bin":
            text = pkcs7.serialize_certificates([leaf, *chain], Encoding.DER)
        else:
            return self._sc_bad(SECTIGO.INVALID_REQUEST, f"Unsupported format '{fmt[:32]}'")
        return _Response(
            200,
            text,
            "application/octet-stream",
            (("Content-Disposition", f"attachment; filename={order.order_id}.crt"),),
        )

    def _sc_revoke(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._sc_order(match)
        if isinstance(order, _Response):
            return order
        body = request.json()
        reason = body.get(SECTIGO.REASON) if body is not None else None
        code = body.get(SECTIGO.REASON_CODE, 0) if body is not None else None
        if not isinstance(reason, str) or not 1 <= len(reason) <= 512:
            return self._sc_bad(SECTIGO.INVALID_REQUEST, "'reason' must be 1 to 512 characters")
        if type(code) is not int or code not in SECTIGO.REASON_CODES:
            return self._sc_bad(SECTIGO.INVALID_REQUEST, "Invalid 'reasonCode'")
        if self._phase(order, self.now()) != "issued":
            return self._sc_bad(
                SECTIGO.ONLY_ISSUED_REVOKED, "Only issued certificates could be revoked"
            )
        order.revoked = f"{code}: {reason}"
        return _Response(204, content_type=None)

    # -- Entrust CA Gateway ---------------------------------------------------------------

    _EN_WORDS: Final[dict[OrderPhase, str]] = {
        "approval": ENTRUST.AWAITING_APPROVAL,
        "processing": ENTRUST.PENDING,
        "issued": ENTRUST.ISSUED,
        "rejected": ENTRUST.REJECTED,
        "revoked": ENTRUST.REVOKED,
    }

    def _en_ca(self, match: re.Match[str]) -> _Response | None:
        if match["ca_id"] != self.credentials.entrust_ca_id:
            return self._error("entrust", 404, "Unknown certificate authority", code="NOT_FOUND")
        return None

    def _en_body(self, order: _Order, status: int) -> _Response:
        phase = self._phase(order, self.now())
        word = self._EN_WORDS[phase]
        if phase == "issued" and order.script.awkward:
            word = ENTRUST.ACCEPTED
        enrollment: dict[str, object] = {
            ENTRUST.ID: order.order_id,
            "subjectName": f"CN={order.common_name}",
            ENTRUST.STATUS_FIELD: word,
            "properties": {},
        }
        if order.certificate is not None and phase == "issued":
            leaf = order.certificate
            enrollment[ENTRUST.SERIAL_NUMBER] = format(order.serial, "x")
            enrollment[ENTRUST.BODY] = pem(leaf) if order.answer_format == "PEM" else _der64(leaf)
            enrollment[ENTRUST.CHAIN] = [
                {ENTRUST.CERTIFICATE_DATA: _der64(c)} for c in self.pki.chain
            ]
        return _json(status, {"type": "EnrollmentResponse", ENTRUST.ENROLLMENT: enrollment})

    def _en_enroll(self, request: _Request, match: re.Match[str]) -> _Response:
        unknown = self._en_ca(match)
        if unknown is not None:
            return unknown
        body = request.json()
        if body is None:
            return self._error("entrust", 400, "Invalid request body", code="BAD_REQUEST")
        wanted = self.credentials.entrust_profile_id
        if wanted is not None and body.get(ENTRUST.PROFILE_ID) != wanted:
            return self._error("entrust", 400, "Unknown profile", code="BAD_REQUEST")
        alt = body.get(ENTRUST.SUBJECT_ALT_NAMES, [])
        if not isinstance(alt, list) or not all(
            isinstance(a, dict)
            and isinstance(a.get("type"), str)
            and isinstance(a.get("value"), str)
            for a in alt
        ):
            return self._error("entrust", 400, "Invalid subjectAltNames", code="BAD_REQUEST")
        dns = [str(a["value"]) for a in alt if a["type"] == "dNSName"]
        required = body.get(ENTRUST.REQUIRED_FORMAT)
        answer_format = required.get("format") if isinstance(required, dict) else None
        if answer_format not in ENTRUST.FORMATS:
            return self._error("entrust", 400, "Unsupported requiredFormat", code="BAD_REQUEST")
        csr_text = body.get(ENTRUST.CSR)
        try:
            csr = load_csr(csr_text if isinstance(csr_text, str) else "")
            common_name, csr_dns = csr_names(csr)
            dns = [*csr_dns, *dns]
            common_name = common_name or (dns[0] if dns else None)
            if common_name is None:
                raise BadCSR("the CSR names nothing")
        except BadCSR:
            return self._error("entrust", 400, "Invalid CSR", code="INVALID_CSR")
        number = self._next_id
        order = self._new_order(
            "entrust",
            common_name=common_name,
            dns_names=dns,
            public_key=csr.public_key(),
            order_id=f"ENR-{number:08d}",
        )
        order.answer_format = str(answer_format)
        return self._en_body(order, 201)

    def _en_status(self, request: _Request, match: re.Match[str]) -> _Response:
        unknown = self._en_ca(match)
        if unknown is not None:
            return unknown
        order = self._lookup("entrust", match["tracking_id"])
        if order is None:
            return self._error("entrust", 404, "Enrollment not found", code="NOT_FOUND")
        return self._scripted(order, lambda: self._en_body(order, 200))

    def _en_certificate(self, request: _Request, match: re.Match[str]) -> _Response:
        unknown = self._en_ca(match)
        if unknown is not None:
            return unknown
        order = self._by_serial_text("entrust", match["serial"])
        if order is None or self._phase(order, self.now()) not in ("issued", "revoked"):
            return self._error("entrust", 404, "Certificate not found", code="NOT_FOUND")

        def answer() -> _Response:
            leaf = order.certificate
            assert leaf is not None
            revoked = self._phase(order, self.now()) == "revoked"
            found = {
                ENTRUST.STATUS_FIELD: ENTRUST.CERTIFICATE_REVOKED if revoked else ENTRUST.NORMAL,
                ENTRUST.SERIAL_NUMBER: format(order.serial, "x"),
                "subjectName": f"cn={order.common_name}",
                "validityPeriod": f"{leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}/"
                f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
                ENTRUST.CERTIFICATE_DATA: _der64(leaf),
            }
            chain = [{ENTRUST.CERTIFICATE_DATA: _der64(c)} for c in self.pki.chain]
            return _json(
                200,
                {
                    "type": "CertificateResponse",
                    ENTRUST.CERTIFICATE_FIELD: found,
                    ENTRUST.CHAIN: chain,
                },
            )

        return self._scripted(order, answer)

    def _en_actions(self, request: _Request, match: re.Match[str]) -> _Response:
        unknown = self._en_ca(match)
        if unknown is not None:
            return unknown
        order = self._by_serial_text("entrust", match["serial"])
        if order is None:
            return self._error("entrust", 404, "Certificate not found", code="NOT_FOUND")
        body = request.json()
        action = body.get(ENTRUST.ACTION) if body is not None else None
        if not isinstance(action, dict) or action.get("type") != ENTRUST.REVOKE_ACTION:
            return self._error("entrust", 400, "Unsupported action", code="BAD_REQUEST")
        reason = action.get("reason", "unspecified")
        if not isinstance(reason, str) or reason.lower() not in ENTRUST.REASONS:
            return self._error("entrust", 400, "Invalid revocation reason", code="BAD_REQUEST")
        if self._phase(order, self.now()) != "issued":
            return self._error("entrust", 400, "Certificate is not active", code="BAD_STATE")
        order.revoked = reason
        done = {
            "type": ENTRUST.REVOKE_ACTION,
            "id": secrets.token_hex(16),
            "properties": {},
            "comment": str(action.get("comment", ""))[:512],
            "status": "COMPLETED",
            "succeedIfAlreadyInRequestedState": True,
            "reason": reason,
        }
        return _json(200, {"type": "ActionResponse", ENTRUST.ACTION: done})

    # -- GlobalSign HVCA -----------------------------------------------------------------

    def _gs_login(self, request: _Request, match: re.Match[str]) -> _Response:
        body = request.json() or {}
        key, secret = body.get(GLOBALSIGN.API_KEY), body.get(GLOBALSIGN.API_SECRET)
        creds = self.credentials
        if not (
            isinstance(key, str)
            and isinstance(secret, str)
            and _same(key, creds.globalsign_api_key) & _same(secret, creds.globalsign_api_secret)
        ):
            return self._error("globalsign", 401, "invalid API credentials", code=401)
        now = self.now()
        for stale in [t for t, expiry in self._tokens.items() if expiry <= now]:
            del self._tokens[stale]
        token = f"{creds.globalsign_token_prefix}-{secrets.token_urlsafe(18)}"
        self._tokens[token] = now + self.token_lifetime
        return _json(200, {GLOBALSIGN.ACCESS_TOKEN: token})

    def _gs_submit(self, request: _Request, match: re.Match[str]) -> _Response:
        body = request.json()
        if body is None:
            return self._error("globalsign", 400, "invalid request body", code=400)
        subject = body.get(GLOBALSIGN.SUBJECT_DN, {})
        san = body.get(GLOBALSIGN.SAN, {})
        if not isinstance(subject, dict) or not isinstance(san, dict):
            return self._error("globalsign", 400, "invalid subject_dn or san", code=400)
        dns = san.get(GLOBALSIGN.DNS_NAMES, [])
        if not _str_list(dns):
            return self._error("globalsign", 400, "san.dns_names must be a list", code=400)
        assert isinstance(dns, list)
        common_name = subject.get(GLOBALSIGN.COMMON_NAME)
        csr_text, key_text = body.get(GLOBALSIGN.CSR), body.get(GLOBALSIGN.PUBLIC_KEY)
        try:
            public_key: CertificatePublicKeyTypes
            # HVCA's public_key takes a PKIX public key or a PKCS#10 CSR, both in PEM.
            if csr_text is None and isinstance(key_text, str) and "REQUEST" not in key_text:
                public_key = public_key_from_pem(key_text)
            else:
                text = csr_text if csr_text is not None else key_text
                csr = load_csr(text if isinstance(text, str) else "")
                public_key = csr.public_key()
                csr_cn, csr_dns = csr_names(csr)
                common_name = common_name or csr_cn
                dns = [*csr_dns, *dns]
        except BadCSR:
            return self._error("globalsign", 400, "invalid CSR or public key", code=400)
        if not isinstance(common_name, str) or not common_name:
            return self._error("globalsign", 400, "subject_dn.common_name is required", code=400)
        order = self._new_order(
            "globalsign", common_name=common_name, dns_names=dns, public_key=public_key
        )
        self._phase(order, self.now())
        location = f"{request.origin}{MOUNTS['globalsign']}/certificates/{order.order_id}"
        return _Response(201, content_type=None, headers=(("Location", location),))

    def _gs_status(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._lookup("globalsign", match["serial"].upper())
        if order is None:
            return self._error("globalsign", 404, "certificate not found", code=404)

        def answer() -> _Response:
            phase = self._phase(order, self.now())
            if phase in ("approval", "processing"):
                words = "awaiting approval" if phase == "approval" else "being issued"
                content = json.dumps({GLOBALSIGN.DESCRIPTION: f"certificate is {words}"})
                return _Response(202, content.encode(), "application/problem+json")
            if phase == "rejected":
                return _json(
                    200,
                    {
                        GLOBALSIGN.STATUS_FIELD: GLOBALSIGN.REJECTED,
                        GLOBALSIGN.SERIAL_NUMBER: order.order_id,
                        GLOBALSIGN.DESCRIPTION: "certificate request rejected",
                    },
                )
            assert order.certificate is not None
            return _json(
                200,
                {
                    GLOBALSIGN.STATUS_FIELD: GLOBALSIGN.ISSUED
                    if phase == "issued"
                    else GLOBALSIGN.REVOKED,
                    GLOBALSIGN.CERTIFICATE_FIELD: self._leaf_pem(order),
                    GLOBALSIGN.CHAIN: self.pki.chain_pem,
                    GLOBALSIGN.SERIAL_NUMBER: order.order_id,
                    GLOBALSIGN.UPDATED_AT: int(order.certificate.not_valid_before_utc.timestamp()),
                },
            )

        return self._scripted(order, answer)

    def _gs_revoke(self, request: _Request, match: re.Match[str]) -> _Response:
        order = self._lookup("globalsign", match["serial"].upper())
        if order is None:
            return self._error("globalsign", 404, "certificate not found", code=404)
        body = request.json() if request.body.strip() else {}
        if body is None:
            return self._error("globalsign", 400, "invalid request body", code=400)
        if self._phase(order, self.now()) != "issued":
            return self._error("globalsign", 409, "certificate is not issued", code=409)
        order.revoked = str(body.get("revocation_reason", "unspecified"))
        return _Response(204, content_type=None)

    def _gs_trustchain(self, request: _Request, match: re.Match[str]) -> _Response:
        return _json(200, [pem(self.pki.intermediate.certificate), self.pki.root_pem])


# -- helpers ------------------------------------------------------------------------------


def _der64(certificate: x509.Certificate) -> str:
    """A certificate as CAGW's certificateData: base64 DER on one line."""
    return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _broken(response: _Response, fault: BodyFault) -> _Response:
    if fault is BodyFault.NOT_JSON:
        page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
        return _Response(200, page, "text/html")
    if fault is BodyFault.TRUNCATED:
        return _Response(200, response.body[: max(1, len(response.body) // 2)])
    try:
        value = json.loads(response.body)
    except ValueError:  # pragma: no cover - every scripted answer is JSON
        value = {}
    if isinstance(value, dict):
        value.pop("status", None)
    return _json(200, value)


def _split_mount(path: str) -> tuple[CAName | None, str]:
    for ca, prefix in MOUNTS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return ca, path[len(prefix) :]
    return None, path


def _request_of(scope: Scope, body: bytes) -> _Request:
    raw_headers = scope.get("headers", [])
    headers: dict[str, str] = {}
    if isinstance(raw_headers, list | tuple):
        for name, value in raw_headers:
            headers[bytes(name).decode("latin-1").lower()] = bytes(value).decode("latin-1")
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    query_string = scope.get("query_string", b"")
    query = dict(
        parse_qsl(query_string.decode("latin-1") if isinstance(query_string, bytes) else "")
    )
    scheme = str(scope.get("scheme", "http"))
    host = headers.get("host", "certpoll-sim")
    client_cert = scope.get(CLIENT_CERT_SCOPE_KEY)
    return _Request(
        method=str(scope.get("method", "GET")).upper(),
        path=path,
        query=query,
        headers=headers,
        body=body,
        origin=f"{scheme}://{host}{root}",
        client_cert=client_cert if isinstance(client_cert, bool) else None,
    )
