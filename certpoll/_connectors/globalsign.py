"""GlobalSign Atlas HVCA (Certificate Management API v2): :class:`GlobalSign`.

Two layers of authentication: the client certificate (mTLS, see
:class:`~certpoll.MTLSTransport`) on every request, and a bearer token from
``POST /login {api_key, api_secret}``. The token is valid for 10 minutes and its lifetime is
not in the answer, so it is renewed after 9 minutes (on the Poller's clock) and once more on
a 401. One login serves every concurrent poll: logins are single-flight under a lock.

An order is ``POST /certificates`` (201, the serial number as the last segment of
``Location``: that serial is the order id and the certificate's serial), watched with
``GET /certificates/{serial}`` (202 while being issued, 200 when done; the certificate is in
the answer) and revoked with ``PATCH /certificates/{serial}``. Bodies are sent as
``application/json;charset=utf-8``, which HVCA insists on. Status words are compared
case-insensitively: HVCA writes ``ISSUED``/``REVOKED``, older clients ``issued``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, final
from urllib.parse import unquote

import httpx

from .._errors import (
    AuthenticationError,
    ConfigError,
    PermanentError,
    ResponseParseError,
    SubmissionUncertain,
)
from .._gate import UpstreamGate
from .._models import (
    CertificateRequest,
    OrderStatus,
    RevocationReason,
)
from .._outcomes import Done, Failed, Pending
from .._poller import Poller
from .._redaction import Redactor
from .._settings import GlobalSignSettings
from .._triage import Triage
from .._wire import GLOBALSIGN, path
from ._base import Connector, JsonAnswer, path_segment

__all__ = ["GlobalSign"]

#: Status words (lowercased) that mean "not yet", besides HTTP 202.
PENDING_STATUSES = frozenset({"pending", "processing"})
#: Status words (lowercased) that are a final "no".
FAILED_STATUSES = frozenset({"revoked", "rejected", "denied", "failed"})

_JSON_UTF8 = "application/json;charset=utf-8"
#: A bearer token as a header can carry it: visible ASCII, no space (RFC 6750's b64token and
#: more), once the whitespace around it is stripped.
_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    renew_at: float

    def __repr__(self) -> str:
        return f"_Token([redacted], renew_at={self.renew_at!r})"


@final
class GlobalSign(Connector[GlobalSignSettings]):
    """GlobalSign Atlas HVCA, over mTLS with a bearer token.

    Without ``http=`` the connector creates its own client with an :class:`MTLSTransport`
    mounted for ``api_url`` (pinning ``server_ca_path`` when set); a shared client must mount
    one itself (see :func:`certpoll.mtls_mounts`). ``clock`` (default: the Poller's) times
    the token. Order ids are HVCA serial numbers.
    """

    ca = "globalsign"
    order_noun = "certificate"
    pending_words = PENDING_STATUSES
    failed_words = FAILED_STATUSES
    issued_word = "issued"

    #: HVCA tokens live 10 minutes; renew a minute early.
    token_lifetime: ClassVar[float] = 540.0

    def __init__(
        self,
        settings: GlobalSignSettings,
        *,
        http: httpx.AsyncClient | None = None,
        poller: Poller | None = None,
        gate: UpstreamGate | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._tokens: deque[str] = deque(maxlen=4)
        self._token_redactor = Redactor(settings.secret_values())
        super().__init__(settings, http=http, poller=poller, gate=gate)
        self._clock = self.poller.now if clock is None else clock
        self._token: _Token | None = None
        self._login_lock = asyncio.Lock()
        self._logins_done = 0
        self._login_failure: Pending | Failed | None = None

    def _default_client(self) -> httpx.AsyncClient:
        return self._mtls_client(self.settings)

    def _make_triage(self) -> Triage:
        return dataclasses.replace(
            super()._make_triage(),
            pending_status_codes=frozenset({202}),
            not_ready=_still_issuing,
        )

    def redact(self, text: str) -> str:
        """``text`` without the API key, the API secret or any recent bearer token, in any
        spelling (one pass, longest first, as for every credential)."""
        return self._token_redactor(text)

    def _remember(self, token: str) -> None:
        """Redact ``token`` from now on (with the last few before it)."""
        self._tokens.append(token)
        self._token_redactor = Redactor((*self.settings.secret_values(), *self._tokens))

    # -- the token --------------------------------------------------------------------

    async def _bearer(self) -> str | Pending | Failed:
        """A valid token, logging in first if needed; one login however many callers."""
        token = self._token
        if token is not None and self._clock() < token.renew_at:
            return token.value
        seen = self._logins_done
        async with self._login_lock:
            token = self._token
            if token is not None and self._clock() < token.renew_at:
                return token.value
            if self._logins_done != seen and self._login_failure is not None:
                # A login failed while this caller waited: share its outcome, don't storm.
                return self._login_failure
            outcome = await self._login()
            # Counted when done: callers that arrived during this login share its outcome.
            self._logins_done += 1
            if isinstance(outcome, _Token):
                self._token, self._login_failure = outcome, None
                return outcome.value
            self._login_failure = outcome
            return outcome

    async def _login(self) -> _Token | Pending | Failed:
        started = self._clock()
        body = {
            GLOBALSIGN.API_KEY: self.settings.api_key.get_secret_value(),
            GLOBALSIGN.API_SECRET: self.settings.api_secret.get_secret_value(),
        }
        sent = await self._send(self._request("POST", self.url(path(GLOBALSIGN.LOGIN)), body=body))
        answer = self._json_answer(sent, order_id=None)
        if not isinstance(answer, JsonAnswer):
            return answer
        value = answer.body.get(GLOBALSIGN.ACCESS_TOKEN)
        if not isinstance(value, str) or not value.strip():
            problem = "the login answer has no access_token"
            return Failed(self._parse_error(problem, answer.response, None))
        self._remember(value)
        token = value.strip()
        if not _SENDABLE_TOKEN.fullmatch(token):
            # httpx would refuse it in a header with a message quoting it (or fail to encode
            # it): refuse it here, where nothing quotes it.
            problem = "the login answer's access_token cannot be sent in an HTTP header"
            return Failed(self._parse_error(problem, answer.response, None))
        if token != value:
            self._remember(token)
        return _Token(token, started + self.token_lifetime)

    def _forget(self, value: str) -> None:
        """Drop a token the CA refused, unless another caller already replaced it."""
        if self._token is not None and self._token.value == value:
            self._token = None

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, object] | None = None,
        token: str | None = None,
    ) -> httpx.Request:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            headers["Content-Type"] = _JSON_UTF8
            content = json.dumps(body).encode("utf-8")
        return self.http.build_request(method, url, headers=headers, content=content)

    async def _authorised(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, object] | None = None,
        order_id: str | None = None,
    ) -> httpx.Response | Pending | Failed:
        """Send with the bearer token; on a 401, log in again once and resend once."""
        sent, _ = await self._authorised_answer(method, url, body=body, order_id=order_id)
        return sent

    async def _authorised_answer(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, object] | None = None,
        order_id: str | None = None,
    ) -> tuple[httpx.Response | Pending | Failed, bool]:
        """:meth:`_authorised`, and whether its outcome is the request's own (False: the
        login's, which never sent the request)."""
        sent: httpx.Response | Pending | Failed = Pending()
        for _ in range(2):
            token = await self._bearer()
            if not isinstance(token, str):
                return token, False
            sent = await self._send(
                self._request(method, url, body=body, token=token), order_id=order_id
            )
            if not _is_401(sent):
                return sent, True
            self._forget(token)
        return sent, True

    # -- the API ----------------------------------------------------------------------

    async def issue(self, request: CertificateRequest) -> OrderStatus:
        """Order a certificate: the answer is the serial number, the certificate comes later.

        Never retried, except once after a 401 (a refused request created nothing): an
        answer that leaves the order's fate open raises :class:`SubmissionUncertain`.
        """
        body: dict[str, object] = {
            # HVCA takes the CSR as the public key; the policy decides what else it uses.
            "public_key": request.csr_pem,
            "subject_dn": {"common_name": request.common_name},
            "validity": {"not_before": int(time.time()), "not_after": 0},
        }
        if request.sans:
            body["san"] = {"dns_names": list(request.sans)}
        try:
            response = await self._post_order(request, body)
        except AuthenticationError as exc:
            if exc.status_code != 401:
                raise
            # A 401 means nothing was created: log in again and send once more.
            response = await self._post_order(request, body)
        return self._accepted(request, response)

    async def _post_order(
        self, request: CertificateRequest, body: Mapping[str, object]
    ) -> httpx.Response:
        token = await self._bearer()
        if not isinstance(token, str):
            raise self._error_for(token)
        try:
            return await self._submit(
                self._request("POST", self.url(path(GLOBALSIGN.SUBMIT)), body=body, token=token),
                certificate_request=request,
            )
        except AuthenticationError as exc:
            if exc.status_code == 401:
                self._forget(token)
            raise

    def _accepted(self, request: CertificateRequest, response: httpx.Response) -> OrderStatus:
        problem: SubmissionUncertain | None = None
        try:
            answer, serial = self._answer_and_serial(response)
        except ResponseParseError as exc:
            problem = self._triage.chained(self._unreadable_submission(request, response), exc)
        except ConfigError:
            # No cause: the refusal quotes the start of the CA's serial, an echo possibly cut
            # too short to be recognised and redacted. Raised after the handler, so that it
            # does not ride along as __context__ either.
            problem = self._unreadable_submission(request, response)
        if problem is not None:
            raise problem
        if "status" not in answer:
            return self._submitted(serial)
        return self._submitted(serial, self._outcome(answer, response, serial))

    def _answer_and_serial(self, response: httpx.Response) -> tuple[Mapping[str, object], str]:
        """The 2xx answer to an order (if it has a body) and the serial it names."""
        answer: Mapping[str, object] = {}
        if response.content.strip():
            answer = self._json(response, order_id=None)
        serial = _location_serial(response.headers.get("Location"))
        if serial is None:
            number = answer.get("serial_number")
            serial = number if isinstance(number, str) and number.strip() else None
        if serial is None:
            raise self._parse_error("the answer has no Location serial", response, None)
        path_segment(serial, what="GlobalSign serial number")
        return answer, serial

    async def poll_once(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        """Look at the certificate once: 202 is pending, 200 carries the verdict."""
        order_id = self.check_order_id(order_id)
        serial = path_segment(order_id, what="GlobalSign serial number")
        url = self.url(path(GLOBALSIGN.CERTIFICATE, serial=serial))
        sent, own = await self._authorised_answer("GET", url, order_id=order_id)
        refused = _validation_refusal(sent) if own else None
        if refused is not None:
            # Redacted again once decoded: a JSON escape ("\/", "\u0067") hides a credential
            # from the redaction of the raw excerpt.
            words = self.redact(refused)
            return Done(self._rejected(order_id, f"certificate {order_id} was rejected: {words}"))
        answer = self._json_answer(sent, order_id=order_id)
        if not isinstance(answer, JsonAnswer):
            return answer
        return self._outcome(answer.body, answer.response, order_id)

    def _outcome(
        self, answer: Mapping[str, object], response: httpx.Response, serial: str
    ) -> Done[OrderStatus] | Pending | Failed:
        outcome = self._answer_status(answer, response, serial)
        if outcome is not None:
            return outcome
        pem = answer.get("certificate")
        if not isinstance(pem, str) or not pem.strip():
            return Failed(
                self._parse_error(
                    "the certificate is ISSUED but its PEM is missing", response, serial
                )
            )
        chain = answer.get("chain")
        return self._issued_from_pem(
            pem,
            order_id=serial,
            ca_certificate_id=serial,
            chain=chain if isinstance(chain, str) else "",
        )

    async def _send_revocation(
        self, certificate_id: str, reason: RevocationReason, comment: str | None
    ) -> httpx.Response | Pending | Failed:
        """``PATCH /certificates/{serial}`` with the reason and the current time.

        HVCA records no free text, so ``comment`` is ignored (it is accepted so that every
        connector's ``revoke`` takes the same arguments).
        """
        del comment  # HVCA's revocation has no field for it
        serial = path_segment(certificate_id, what="GlobalSign serial number")
        body = {
            "revocation_reason": self._wire_reason(reason, GLOBALSIGN.REVOCATION_REASONS),
            "revocation_time": int(time.time()),
        }
        return await self._authorised(
            "PATCH", self.url(path(GLOBALSIGN.CERTIFICATE, serial=serial)), body=body
        )


def _still_issuing(response: httpx.Response) -> str | None:
    """The CA's words in a 202 (``{"description": ...}``, problem+json), or None."""
    if response.status_code != 202:
        return None
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    description = body.get("description") if isinstance(body, dict) else None
    if not isinstance(description, str) or not description.strip():
        return None
    # Whole: the triage redacts it before it cuts it (a cut here could split a credential).
    return f"HTTP 202: {description.strip()}"


def _validation_refusal(sent: httpx.Response | Pending | Failed) -> str | None:
    """The CA's words when a certificate lookup is answered 422, else None.

    HVCA's API description answers ``GET /certificates/{serial}`` with 422 "when the issuing
    backend could not validate the issuance request": the order is refused for good, a
    ``FAILED`` status rather than an error. The words are the problem+json ``description``.
    """
    if not isinstance(sent, Failed):
        return None
    error = sent.error
    if type(error) is not PermanentError or error.status_code != GLOBALSIGN.VALIDATION_FAILED:
        return None
    excerpt = error.body_excerpt or ""
    try:
        body = json.loads(excerpt)
    except ValueError:
        body = None
    description = body.get(GLOBALSIGN.DESCRIPTION) if isinstance(body, dict) else None
    words = description.strip() if isinstance(description, str) else excerpt
    return f"HTTP 422: {words[:200]}" if words else "HTTP 422"


def _is_401(sent: httpx.Response | Pending | Failed) -> bool:
    return (
        isinstance(sent, Failed)
        and isinstance(sent.error, AuthenticationError)
        and sent.error.status_code == 401
    )


def _location_serial(location: str | None) -> str | None:
    """The serial number HVCA puts as the last path segment of ``Location``."""
    if not location:
        return None
    try:
        path = httpx.URL(location).path
    except httpx.InvalidURL:
        return None
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return unquote(last) or None
