"""What the four connectors share: the client, the Poller, the gate and the triage.

A connector subclass supplies only what is CA-specific: URLs, authentication, request
bodies, its status-word table and the parsing of its JSON (``issue``, ``poll_once``,
``revoke``). Every request goes through :meth:`Connector._send` (gate, capped read, triage);
the order submission goes through :meth:`Connector._submit`, which never retries.
"""

from __future__ import annotations

import abc
import contextvars
import dataclasses
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, Generic, TypeVar
from urllib.parse import quote

import httpx

from .._certs import certificate_from_pem
from .._closing import AsyncClosing
from .._errors import (
    CertpollError,
    ConfigError,
    PermanentError,
    ResponseParseError,
    SubmissionUncertain,
    TransientError,
)
from .._gate import UpstreamGate, connector_gate
from .._models import (
    CAName,
    Certificate,
    CertificateRequest,
    OrderState,
    OrderStatus,
    RevocationReason,
)
from .._mtls import mtls_mounts
from .._outcomes import Done, Failed, Pending, StillPending
from .._poller import Poller, attempt_deadline
from .._redaction import Redactor
from .._settings import CASettings, EntrustSettings, GlobalSignSettings
from .._triage import Triage
from ._http import read_capped, redirect_request, same_origin

__all__ = ["Connector", "JsonAnswer", "decimal_id", "path_segment", "positive_int"]

logger = logging.getLogger("certpoll")

#: Covariant: a DigiCert (a Connector[DigiCertSettings]) is a Connector[CASettings].
S = TypeVar("S", bound=CASettings, covariant=True)
T = TypeVar("T")

#: Reading stops here: no certificate answer is anywhere near this size.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024

#: Redirects followed at most, when ``follow_redirects`` is on.
MAX_REDIRECTS = 5

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DECIMAL_ID = re.compile(r"[1-9][0-9]{0,19}")
#: Unknown status words already warned about, per CA; bounded so a CA inventing a new word
#: on every answer cannot grow it without limit.
_WARNED_STATUSES: set[tuple[str, str]] = set()
_MAX_WARNED_STATUSES = 1024
#: Transport errors raised before any byte of the request left: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclasses.dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A 2xx answer whose body is a JSON object (see :meth:`Connector._json_answer`)."""

    response: httpx.Response
    body: Mapping[str, object]


@dataclasses.dataclass(slots=True)
class _Issuing:
    """An ``issue()`` running in this task; ``submitted`` once the CA accepted the order."""

    submitted: bool = False


_issuing: contextvars.ContextVar[_Issuing | None] = contextvars.ContextVar(
    "certpoll_issuing", default=None
)

_Issue = Callable[["Connector[CASettings]", CertificateRequest], Awaitable[OrderStatus]]


def _marking_issue(issue: _Issue) -> _Issue:
    """``issue`` run so that, once the order is accepted, no request waits at the gate."""

    @functools.wraps(issue)
    async def issue_without_waiting(
        self: Connector[CASettings], request: CertificateRequest
    ) -> OrderStatus:
        token = _issuing.set(_Issuing())
        try:
            return await issue(self, request)
        finally:
            _issuing.reset(token)

    return issue_without_waiting


def path_segment(value: str, *, what: str = "order id") -> str:
    """``value`` escaped as exactly one URL path segment, or a :class:`ConfigError`.

    ``/``, ``?``, ``#`` and ``%`` are percent-encoded; empty values, ``.``, ``..``, control
    characters and values over 256 characters are refused.
    """
    if not isinstance(value, str):
        raise ConfigError(f"the {what} must be a string, not {type(value).__name__}")
    if value in ("", ".", "..") or len(value) > 256 or _CONTROL.search(value):
        raise ConfigError(f"{value[:64]!r} is not a valid {what}")
    return quote(value, safe="")


def decimal_id(value: str, *, what: str = "order id") -> str:
    """``value`` if it is a positive decimal integer (ASCII digits, no sign, no leading zero).

    Anything else (``"12abc"``, ``" 12"``, ``"-5"``, ``"0x10"``, ``"1e3"``, ``""``) is a
    :class:`ConfigError`: a lenient parse would poll some other order.
    """
    if not isinstance(value, str):
        raise ConfigError(f"the {what} must be a string, not {type(value).__name__}")
    if not _DECIMAL_ID.fullmatch(value):
        raise ConfigError(f"{value[:64]!r} is not a valid {what}: expected a positive integer")
    return value


def positive_int(value: object) -> int | None:
    """``value`` as a CA's numeric id: a positive JSON integer, or the same written as a
    JSON string of decimal digits (``"sslId": "123"``, as some clients record ids), else None.

    A string is held to :func:`decimal_id`'s rule (no sign, space or leading zero), so no
    lenient parse can name another order.
    """
    # bool is an int to Python, never an id to a CA.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _DECIMAL_ID.fullmatch(value):
        return int(value)
    return None


class Connector(AsyncClosing, Generic[S]):
    """The shape shared by :class:`~certpoll.DigiCert`, ``Sectigo``, ``Entrust``, ``GlobalSign``.

    >>> async with certpoll.connector_for(settings) as connector:  # doctest: +SKIP
    ...     order = await connector.issue(request)
    ...     status = await connector.get_order_status(order.order_id)

    ``http`` is the ``httpx.AsyncClient`` to share; without it the connector creates one and
    closes it in :meth:`aclose`. A client passed in is never closed by the connector.
    ``poller`` replaces the Poller built from the settings: inject clock, sleep and rng there,
    the one place for a connector's time (its gate and ``poll_many`` use them too). A ``gate``
    passed in keeps its own clock and sleep.
    """

    #: The CA's short name, as in :attr:`OrderStatus.ca`.
    ca: ClassVar[CAName]
    #: The word the CA's documents use for an order, in messages.
    order_noun: ClassVar[str] = "order"
    #: The CA's status words (after :meth:`_status_word`) for "not yet", a final "no", and
    #: issued; any other word is pending, with a warning.
    pending_words: ClassVar[frozenset[str]]
    failed_words: ClassVar[frozenset[str]]
    issued_word: ClassVar[str]
    #: Words in a 404 body that mean the route itself does not exist (the base URL is wrong),
    #: as opposed to an unknown order: the simulated CA's, plus any the CA adds.
    missing_route_words: ClassVar[tuple[str, ...]] = ("no such resource",)

    #: The client every request goes through (the connector's own, or the one passed in).
    http: httpx.AsyncClient
    #: The one place for the connector's time: the schedule, its clock, sleep and jitter.
    poller: Poller
    #: The gate every request passes (rate limits, the shared cooldown).
    gate: UpstreamGate

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Every connector's issue() returns the accepted order without queueing behind
        # anyone's hold: its look after the submit goes only if the gate is open at once.
        issue = cls.__dict__.get("issue")
        if issue is not None and not getattr(issue, "__isabstractmethod__", False):
            cls.issue = _marking_issue(issue)  # type: ignore[assignment,method-assign]

    def __init__(
        self,
        settings: S,
        *,
        http: httpx.AsyncClient | None = None,
        poller: Poller | None = None,
        gate: UpstreamGate | None = None,
    ) -> None:
        self.settings = settings
        self._owns_http = http is None
        if not settings.tls_verify:
            logger.warning(
                "certpoll.tls_verify_off ca=%s: %s",
                self.ca,
                "the CA's TLS certificate is NOT verified (tls_verify=false)"
                if http is None
                else "tls_verify=false does not apply to the http= client passed in, "
                "which verifies as it was built",
                extra={"certpoll_ca": self.ca},
            )
        self.http = self._default_client() if http is None else http
        self.poller = settings.make_poller() if poller is None else poller
        # One time source: the gate waits on the Poller's clock and sleep.
        self._owns_gate = gate is None
        self.gate = (
            connector_gate(settings, ca=self.ca, clock=self.poller.clock, sleep=self.poller.sleep)
            if gate is None
            else gate
        )
        self._redactor = Redactor(settings.secret_values())
        self._triage = self._make_triage()

    def _make_triage(self) -> Triage:
        """The triage of every request: a connector adds its CA's own words to this one
        (``dataclasses.replace``), so the redaction, the Retry-After cap and the missing-route
        check hold for every CA."""
        return Triage(
            ca=self.ca,
            redact=self.redact,
            retry_after_cap=self.settings.retry_after_cap_seconds,
            missing_route=self._missing_route,
        )

    def _missing_route(self, response: httpx.Response) -> str | None:
        """For a 404: what to tell the user if the route itself is missing, else None."""
        try:
            text = response.text
        except (httpx.ResponseNotRead, UnicodeDecodeError, LookupError):
            return None
        if not any(word in text for word in self.missing_route_words):
            return None
        return (
            f"{self.ca} has no such API route: the base URL {self.redact(self.base_url)!r} is "
            f"probably wrong (check {self.settings.base_url_variable()})"
        )

    def _default_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.settings.attempt_timeout_seconds, verify=self.settings.tls_verify
        )

    @staticmethod
    def _mtls_client(settings: EntrustSettings | GlobalSignSettings) -> httpx.AsyncClient:
        """A client authenticated by the settings' client certificate, for ``api_url``."""
        return httpx.AsyncClient(
            timeout=settings.attempt_timeout_seconds, mounts=mtls_mounts(settings)
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        """The CA's API root (the settings' ``base_url`` or ``api_url``), without a trailing
        slash.
        """
        root: str = getattr(self.settings, self.settings.url_field)
        return root.rstrip("/")

    # -- the lifecycle ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP client and the gate's backend if this connector created them."""
        if self._owns_http:
            await self.http.aclose()
        if self._owns_gate:
            await self.gate.aclose()

    # -- what each CA implements ----------------------------------------------------------

    @abc.abstractmethod
    async def issue(self, request: CertificateRequest) -> OrderStatus:
        """Submit one order, once. Never retried: see :class:`SubmissionUncertain`."""

    @abc.abstractmethod
    async def poll_once(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        """One triaged look at an order (status and, when issued, the download)."""

    async def revoke(
        self,
        certificate: Certificate | str,
        *,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        comment: str | None = None,
    ) -> None:
        """Revoke a certificate, given as a :class:`Certificate` or its ``ca_certificate_id``.

        ``reason`` goes by the CA's own name or code for it; a reason the CA does not take is
        sent as its "unspecified" (logged as ``certpoll.revocation_reason_mapped``).
        ``comment`` is the free text the CA records with the request (default: the reason);
        a CA that takes none (GlobalSign) ignores it. A refusal raises the triaged error
        (:class:`AuthenticationError`, :class:`OrderNotFound`, :class:`PermanentError`,
        :class:`TransientError`).
        """
        certificate_id = (
            certificate.ca_certificate_id if isinstance(certificate, Certificate) else certificate
        )
        try:
            rfc_reason = RevocationReason(reason)
        except ValueError as exc:
            raise ConfigError(f"{reason!r} is not a RevocationReason") from exc
        sent = await self._send_revocation(certificate_id, rfc_reason, comment)
        if not isinstance(sent, httpx.Response):
            raise self._error_for(sent)

    @abc.abstractmethod
    async def _send_revocation(
        self, certificate_id: str, reason: RevocationReason, comment: str | None
    ) -> httpx.Response | Pending | Failed:
        """Send the CA's revocation request; ``certificate_id`` is not yet checked."""

    def _wire_reason(self, reason: RevocationReason, names: Mapping[RevocationReason, T]) -> T:
        """``reason`` as the CA's table ``names`` writes it; one it lacks as "unspecified"."""
        if reason in names:
            return names[reason]
        logger.info(
            "certpoll.revocation_reason_mapped ca=%s reason=%s sent=unspecified",
            self.ca,
            reason.name,
            extra={"certpoll_ca": self.ca},
        )
        return names[RevocationReason.UNSPECIFIED]

    def check_order_id(self, order_id: str) -> str:
        """The order id as this CA accepts it; a :class:`ConfigError` before any request."""
        path_segment(order_id)
        return order_id

    # -- what they share ----------------------------------------------------------------

    async def get_order_status(self, order_id: str) -> OrderStatus:
        """Poll an order until it is issued or failed, or PollMaxWait has passed.

        Returns ``ISSUED`` or ``FAILED`` as soon as the CA says so, or ``PENDING`` (with the
        latest message, ``last_error`` and ``retry_after``) after PollMaxWait. A permanent
        problem (bad credential, unknown order, unreadable answer) raises.
        """
        order_id = self.check_order_id(order_id)
        outcome = await self.poller.poll(
            lambda: self.poll_once(order_id), ca=self.ca, order_id=order_id
        )
        return self.final_status(order_id, outcome)

    def final_status(self, order_id: str, outcome: Done[OrderStatus] | StillPending) -> OrderStatus:
        """The :class:`OrderStatus` a finished poll of ``order_id`` answers with.

        A :class:`Done` carries it; a :class:`StillPending` becomes ``PENDING`` with the CA's
        latest word as the message (a generic one without it), ``last_error`` and
        ``retry_after``. :meth:`get_order_status`, :func:`~certpoll.resume` and
        :func:`~certpoll.poll_many` all answer through it.
        """
        if isinstance(outcome, Done):
            return outcome.value
        return OrderStatus(
            ca=self.ca,
            order_id=order_id,
            state=OrderState.PENDING,
            message=outcome.detail
            or f"{self.order_noun} {order_id} still pending after PollMaxWait",
            last_error=outcome.last_error,
            retry_after=outcome.retry_after,
        )

    def _issued(self, order_id: str, certificate: Certificate) -> Done[OrderStatus]:
        """The final answer for an issued order."""
        return Done(
            OrderStatus(
                ca=self.ca, order_id=order_id, state=OrderState.ISSUED, certificate=certificate
            )
        )

    def _rejected(self, order_id: str, message: str) -> OrderStatus:
        """The CA's final "no" for an order: ``FAILED``, with the CA's words in ``message``."""
        return OrderStatus(ca=self.ca, order_id=order_id, state=OrderState.FAILED, message=message)

    def _unreadable_submission(
        self, request: CertificateRequest, response: httpx.Response
    ) -> SubmissionUncertain:
        """A 2xx answer to an order that cannot be read: the order may well exist."""
        return SubmissionUncertain(
            f"{self.ca}: the answer to the {self.order_noun} for {request.common_name!r} "
            "cannot be read; check the CA before ordering again",
            ca=self.ca,
            common_name=request.common_name,
            status_code=response.status_code,
            body_excerpt=self._triage.excerpt(response),
        )

    def _accepted_order(
        self, request: CertificateRequest, response: httpx.Response, *, id_field: str
    ) -> tuple[str, Mapping[str, object]]:
        """The order id (the positive integer at ``id_field``) and the body of a 2xx answer
        to an order; an answer without them is :meth:`_unreadable_submission`.
        """
        try:
            answer = self._json(response, order_id=None)
            number = positive_int(answer.get(id_field))
            if number is None:
                raise self._parse_error(f"the answer has no {id_field}", response, None)
        except ResponseParseError as exc:
            raise self._unreadable_submission(request, response) from exc
        return str(number), answer

    def redact(self, text: str) -> str:
        """``text`` with every credential of these settings, in any spelling, redacted."""
        return self._redactor(text)

    def _submitted(
        self, order_id: str, first_look: Done[OrderStatus] | Pending | Failed | None = None
    ) -> OrderStatus:
        """What ``issue`` returns for an order the CA accepted, after an optional first look.

        A problem during that first look (even a permanent one, such as an unreadable
        download) is not the order's fate and must not lose its id: the order comes back
        ``PENDING`` with the problem as ``last_error``, for ``get_order_status`` to settle.
        """
        if isinstance(first_look, Done):
            return first_look.value
        pending = OrderStatus(
            ca=self.ca,
            order_id=order_id,
            state=OrderState.PENDING,
            message=f"{self.order_noun} {order_id} submitted",
        )
        if isinstance(first_look, Pending):
            return dataclasses.replace(
                pending,
                message=first_look.detail or pending.message,
                last_error=first_look.error,
                retry_after=first_look.retry_after,
            )
        if isinstance(first_look, Failed):
            return dataclasses.replace(pending, last_error=first_look.error)
        return pending

    @staticmethod
    def _status_word(status: str) -> str:
        """``status`` as the word tables spell it: lower case, spaces collapsed (CAs and the
        clients that record them vary the case, so every connector compares without it)."""
        return " ".join(status.split()).lower()

    def _status_outcome(self, status: str, *, order_id: str) -> Done[OrderStatus] | Pending | None:
        """What a status word says: pending, rejected, or unknown (pending); None if issued."""
        word = self._status_word(status)
        if word in self.pending_words:
            return Pending(detail=f"{self.order_noun} {order_id} is {status}")
        if word in self.failed_words:
            return Done(self._rejected(order_id, f"{self.order_noun} {order_id} is {status}"))
        if word != self.issued_word:
            return self._unknown_status(status, order_id=order_id)
        return None

    def _unknown_status(self, status: str, *, order_id: str) -> Pending:
        """A status word this connector does not know: pending, warned about once per word."""
        word = self.redact(status)[:64]
        key = (self.ca, word)
        if key not in _WARNED_STATUSES and len(_WARNED_STATUSES) < _MAX_WARNED_STATUSES:
            _WARNED_STATUSES.add(key)
            logger.warning(
                "certpoll.unknown_status ca=%s status=%r order_id=%s: treated as pending",
                self.ca,
                word,
                order_id,
                extra={"certpoll_ca": self.ca, "certpoll_status": word},
            )
        return Pending(
            detail=f"{self.order_noun} {order_id} has status {word!r}, unknown to certpoll"
        )

    def url(self, *segments: str) -> str:
        """The URL of ``segments`` under :attr:`base_url`; each must already be escaped."""
        return "/".join((self.base_url, *segments))

    def _admission_deadline(self) -> float | None:
        """When the gate must have admitted a request sent now, or None for no bound.

        Inside a poll attempt: the poll's deadline. After the submit of ``issue()``: now
        (the accepted order is returned rather than wait behind another order's hold).
        """
        issuing = _issuing.get()
        if issuing is not None and issuing.submitted:
            return self.gate.now()
        return attempt_deadline()

    async def _send(
        self, request: httpx.Request, *, order_id: str | None = None
    ) -> httpx.Response | Pending | Failed:
        """Send through the gate; a 2xx response, read in full, or the triaged outcome.

        A request the gate cannot admit in time is not sent: ``Pending(GateClosed)``, with
        the time until the gate opens as ``retry_after``.
        """
        try:
            async with self.gate.admit(deadline=self._admission_deadline()) as admission:
                try:
                    response = await self._fetch(request, order_id=order_id)
                except httpx.HTTPError as exc:
                    return self._triage.exception(exc, order_id=order_id)
                except ResponseParseError as exc:
                    return Failed(exc)
                # Inside the block: a 429 holds the whole gate, and a probe's answer is known.
                outcome = self._triage.response(response, order_id=order_id)
                admission.observe(outcome)
        except TransientError as exc:  # GateClosed, or a shared gate that did not answer
            exc.ca, exc.order_id = self.ca, order_id
            return Pending(exc, exc.retry_after)
        return response if outcome is None else outcome

    async def _submit(
        self, request: httpx.Request, *, certificate_request: CertificateRequest
    ) -> httpx.Response:
        """Send an order, once. Returns a 2xx response; raises on anything else.

        A request that cannot have reached the CA (no connection) raises
        :class:`TransientError`; one that may have (timeout after sending, connection lost,
        5xx, 408) raises :class:`SubmissionUncertain`; a refusal (4xx) raises its
        :class:`PermanentError` or, for 429, :class:`RateLimited`.
        """
        name = certificate_request.common_name
        async with self.gate.admit() as admission:
            # Built in the handlers, raised after them: a cause holding a credential (an
            # httpx message quoting a header) must not ride along as __context__.
            problem: CertpollError | None = None
            try:
                response = await self._fetch(request, order_id=None)
            except _NOT_SENT as exc:
                problem = self._triage.chained(
                    TransientError(
                        f"{self.ca}: the order for {name!r} was not sent: {type(exc).__name__}",
                        ca=self.ca,
                    ),
                    exc,
                )
            except httpx.HTTPError as exc:
                problem = self._triage.chained(
                    SubmissionUncertain(
                        f"{self.ca}: the order for {name!r} may have reached the CA: "
                        f"{type(exc).__name__}; check the CA before ordering again",
                        ca=self.ca,
                        common_name=name,
                    ),
                    exc,
                )
            except ResponseParseError as exc:
                problem = self._triage.chained(
                    SubmissionUncertain(
                        f"{self.ca}: the CA's answer to the order for {name!r} cannot be read; "
                        "check the CA before ordering again",
                        ca=self.ca,
                        common_name=name,
                    ),
                    exc,
                )
            if problem is not None:
                raise problem
            triaged = self._triage.response(response)
            admission.observe(triaged)
        if triaged is None or response.status_code in self._triage.pending_status_codes:
            self._mark_submitted()
        if triaged is None:
            return response
        outcome = triaged
        if isinstance(outcome, Failed):
            raise outcome.error
        error = outcome.error
        if isinstance(error, TransientError) and error.status_code not in (429, None):
            raise SubmissionUncertain(
                f"{self.ca}: the order for {name!r} got HTTP {error.status_code}; it may have "
                "been created: check the CA before ordering again",
                ca=self.ca,
                common_name=name,
                status_code=error.status_code,
                body_excerpt=error.body_excerpt,
            ) from error
        if error is not None:
            raise error
        if response.status_code in self._triage.pending_status_codes:
            # A "still working" status code (GlobalSign's 202) on a submit is an accepted order.
            return response
        # A CA's "not ready, try later" words make sense for a download, never for an order.
        raise PermanentError(
            f"{self.ca}: the order for {name!r} was refused: HTTP {response.status_code}: "
            f"{outcome.detail}",
            ca=self.ca,
            status_code=response.status_code,
            body_excerpt=self._triage.excerpt(response),
        )

    @staticmethod
    def _mark_submitted() -> None:
        issuing = _issuing.get()
        if issuing is not None:
            issuing.submitted = True

    async def _fetch(self, request: httpx.Request, *, order_id: str | None) -> httpx.Response:
        """Send ``request`` and read its body; follow redirects only if the settings say so.

        A redirect not followed (the default, too many, one that would carry a body to
        another origin) comes back as the 3xx it is, which the triage makes permanent.
        """
        response = await self._read(request, order_id=order_id)
        if not self.settings.follow_redirects:
            return response
        for _ in range(MAX_REDIRECTS):
            following = redirect_request(request, response, holds_secret=self._holds_secret)
            if following is None:
                break
            url = following.url
            logger.info(
                "certpoll.redirect ca=%s status=%s to=%s same_origin=%s",
                self.ca,
                response.status_code,
                self.redact(f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"),
                same_origin(url, request.url),
            )
            request = following
            response = await self._read(request, order_id=order_id)
        return response

    def _holds_secret(self, text: str) -> bool:
        return self.redact(text) != text

    async def _read(self, request: httpx.Request, *, order_id: str | None) -> httpx.Response:
        """Send ``request`` and read its body, refusing bodies over :data:`MAX_RESPONSE_BYTES`."""
        return await read_capped(
            self.http,
            request,
            limit=MAX_RESPONSE_BYTES,
            too_large=lambda response: self._parse_error(
                f"the answer is larger than {MAX_RESPONSE_BYTES} bytes; reading stopped",
                response,
                order_id,
            ),
        )

    def _json(self, response: httpx.Response, *, order_id: str | None) -> Mapping[str, object]:
        """The body as a JSON object, or :class:`ResponseParseError`."""
        problem: ResponseParseError | None = None
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            # The JSON error holds the whole answer (an echoed credential too): raised after
            # the handler, so that it cannot ride along as __context__ once it is left out.
            problem = self._triage.chained(
                self._parse_error("the answer is not JSON", response, order_id), exc
            )
        if problem is not None:
            raise problem
        if not isinstance(body, dict):
            raise self._parse_error(
                f"the answer is a JSON {type(body).__name__}, not an object", response, order_id
            )
        return body

    def _json_answer(
        self, sent: httpx.Response | Pending | Failed, *, order_id: str | None
    ) -> JsonAnswer | Pending | Failed:
        """What :meth:`_send` gave, its body read as a JSON object; an unreadable one Failed."""
        if not isinstance(sent, httpx.Response):
            return sent
        try:
            return JsonAnswer(sent, self._json(sent, order_id=order_id))
        except ResponseParseError as exc:
            return Failed(exc)

    async def _look(
        self, request: httpx.Request, *, order_id: str
    ) -> JsonAnswer | Done[OrderStatus] | Pending | Failed:
        """Send a status request: its answer if the ``status`` there is issued, else what
        the answer means (:meth:`_answer_status`) or what the sending gave.
        """
        answer = self._json_answer(await self._send(request, order_id=order_id), order_id=order_id)
        if not isinstance(answer, JsonAnswer):
            return answer
        outcome = self._answer_status(answer.body, answer.response, order_id)
        return answer if outcome is None else outcome

    def _answer_status(
        self, answer: Mapping[str, object], response: httpx.Response, order_id: str
    ) -> Done[OrderStatus] | Pending | Failed | None:
        """What the answer's ``status`` says (:meth:`_status_outcome`); None if issued."""
        status = answer.get("status")
        if not isinstance(status, str):
            return Failed(self._parse_error("the answer has no status", response, order_id))
        return self._status_outcome(status, order_id=order_id)

    def _issued_from_pem(
        self,
        pem: str | bytes,
        *,
        order_id: str,
        ca_certificate_id: str,
        chain: str = "",
        public_key: bytes | None = None,
    ) -> Done[OrderStatus] | Failed:
        """The issued order, its certificate (and chain) read from ``pem``, or Failed."""
        try:
            certificate = certificate_from_pem(
                pem,
                ca=self.ca,
                order_id=order_id,
                ca_certificate_id=ca_certificate_id,
                chain=chain,
                public_key=public_key,
            )
        except ResponseParseError as exc:
            return Failed(self._triage.scrubbed(exc))
        return self._issued(order_id, certificate)

    def _parse_error(
        self, problem: str, response: httpx.Response, order_id: str | None
    ) -> ResponseParseError:
        return ResponseParseError(
            f"{self.ca} {response.request.method} {self.redact(response.request.url.path)}: "
            f"{problem}",
            ca=self.ca,
            order_id=order_id,
            status_code=response.status_code,
            body_excerpt=self._triage.excerpt(response),
        )

    def _error_for(self, outcome: Pending | Failed) -> Exception:
        """The error to raise for a non-2xx outcome of a request outside a poll (``revoke``)."""
        if outcome.error is not None:
            return outcome.error
        # Only a Pending comes without an error: a "try later" answer where none was expected.
        return TransientError(f"{self.ca}: the CA is not ready: {outcome.detail}", ca=self.ca)
