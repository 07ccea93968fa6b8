"""Entrust CA Gateway (CAGW, also PKI-as-a-Service): :class:`Entrust`.

Authentication is the client certificate alone (mTLS, see :class:`~certpoll.MTLSTransport`).
An enrollment is submitted with ``POST /v1/certificate-authorities/{caId}/enrollments``
asking for ``requiredFormat: X509``; CAGW answers ``{"type", "enrollment": {id, serialNumber,
subjectName, status, body, properties, chain}}`` with the certificate in ``body`` (base64
DER; PEM when PEM was asked for) and its chain as ``[{"certificateData": <base64 DER>}]``. A
present ``body`` is an issued certificate unless the status is a failure word.

The order id is the certificate's serial, **hexadecimal** as CAGW writes it, and an order
is looked up with ``GET .../certificates/{serial}`` (``{"certificate": {status,
certificateData}, "chain"}``), the lookup CAGW publishes. An enrollment answered without a
serial or a certificate (held for approval) keeps its enrollment id, which is looked up with
``GET .../enrollments/{id}``: that path is in no description Entrust publishes. Revocation
is ``POST .../certificates/{serial}/actions`` with a ``RevokeAction``.

The flat answer shape (``trackingId``, ``status``, ``certificate``, ``chain``) is read too.
Status words are compared case-insensitively.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import final

import httpx

from .._certs import csr_public_key, issued_certificate, read_certificates
from .._errors import ConfigError, PermanentError, ResponseParseError
from .._models import (
    CertificateRequest,
    OrderStatus,
    RevocationReason,
)
from .._outcomes import Done, Failed, Pending
from .._settings import EntrustSettings
from .._wire import ENTRUST, path
from ._base import Connector, JsonAnswer, path_segment

__all__ = ["Entrust", "hex_serial"]

#: Enrollment statuses that mean "not yet" (approval workflows can hold one for days: set
#: ``poll_max_wait_seconds`` to 86400 for those).
PENDING_STATUSES = frozenset(
    {"PENDING", "PROCESSING", "AWAITING_APPROVAL", "PENDING_QUORUM", "APPROVED", "ACCEPTED"}
)
#: Enrollment statuses that are a final "no".
FAILED_STATUSES = frozenset({"REJECTED", "DENIED", "FAILED", "DECLINED"})
#: What a certificate lookup says of a certificate that is no longer good (CAGW writes
#: ``normal`` for a good one; ECS-backed CAs leave the status out).
CERTIFICATE_FAILED_STATUSES = frozenset({"REVOKED", "HELD", "SUSPENDED", "EXPIRED"})

#: The ``action.status`` of a revocation CAGW turned down (besides ACCEPTED, COMPLETED).
_ACTION_REJECTED = "REJECTED"

_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) [A-Z ]+-----")
#: An order id that is a serial number (hex), looked up as a certificate.
_HEX_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")
_DN_SPECIAL = re.compile(r'([,+"\\<>;=])')


def hex_serial(serial: int) -> str:
    """A serial number as CAGW names it in URLs: lowercase hex, zero-padded to 20 bytes.

    RFC 5280 serials are at most 20 octets; Entrust's CAGW utility shows and asks for them
    in this 40-digit form (e.g. ``0000000091ca4b4b136a86b718ae01a5403ce62b``).
    """
    return format(serial, "040x")


def _csr_base64(csr_pem: str) -> str:
    """The CSR as CAGW takes it: base64 DER, without the PEM armour or line breaks."""
    body = "".join(_PEM_ARMOUR.sub("", csr_pem).split())
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("csr_pem is not valid base64 PEM") from exc
    return body


def _subject_dn(common_name: str) -> str:
    # PKIaaS ignores every attribute of the CSR but its key, so the subject is sent apart.
    escaped = _DN_SPECIAL.sub(r"\\\1", common_name)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return f"CN={escaped}"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _chain_items(chain: object, parse_error: Callable[[str], ResponseParseError]) -> list[str]:
    """The texts of a chain sent as PEM text, or as ``[{"certificateData": ...}]`` or strings."""
    if chain is None:
        return []
    if isinstance(chain, str):
        return [chain]
    if not isinstance(chain, list):
        raise parse_error(f"the chain is a JSON {type(chain).__name__}")
    items: list[str] = []
    for item in chain:
        data = item.get("certificateData") if isinstance(item, dict) else item
        if not isinstance(data, str):
            raise parse_error("a chain entry has no certificateData")
        items.append(data)
    return items


@final
class Entrust(Connector[EntrustSettings]):
    """Entrust CA Gateway, over mTLS.

    Without ``http=`` the connector creates its own client with an :class:`MTLSTransport`
    mounted for ``api_url``; a shared client must mount one itself (see
    :func:`certpoll.mtls_mounts`). Order ids are certificate serials in hex, as CAGW writes
    them, or the enrollment id of an enrollment held without one.
    """

    ca = "entrust"
    order_noun = "enrollment"
    pending_words = PENDING_STATUSES
    failed_words = FAILED_STATUSES
    issued_word = ENTRUST.ISSUED

    @staticmethod
    def _status_word(status: str) -> str:
        """CA Gateway's words are upper case; be lenient about case and spaces."""
        return status.strip().upper()

    def _default_client(self) -> httpx.AsyncClient:
        return self._mtls_client(self.settings)

    def _ca_url(self, template: str, **segments: str) -> str:
        ca_id = path_segment(self.settings.ca_id, what="Entrust CA id")
        return self.url(path(template, ca_id=ca_id, **segments))

    def _request(
        self, method: str, url: str, body: Mapping[str, object] | None = None
    ) -> httpx.Request:
        return self.http.build_request(
            method, url, headers={"Accept": "application/json"}, json=body
        )

    async def issue(self, request: CertificateRequest) -> OrderStatus:
        """Submit one enrollment: ``ISSUED`` if CAGW issued it at once (the usual case).

        A rejection in the answer comes back ``FAILED``; anything else ``PENDING``. Never
        retried: an answer that leaves the order's fate open raises
        :class:`SubmissionUncertain`.
        """
        body: dict[str, object] = {
            "csr": _csr_base64(request.csr_pem),
            "requiredFormat": {"format": "X509"},
            "optionalCertificateRequestDetails": {"subjectDn": _subject_dn(request.common_name)},
        }
        if self.settings.profile_id:
            body["profileId"] = self.settings.profile_id
        if request.sans:
            body["subjectAltNames"] = [{"type": "dNSName", "value": san} for san in request.sans]
        response = await self._submit(
            self._request("POST", self._ca_url(ENTRUST.ENROLL), body),
            certificate_request=request,
        )
        try:
            enrollment = self._enrollment(self._json(response, order_id=None))
            tracking = _text(enrollment.get("trackingId")) or _text(enrollment.get("id"))
            order_id = _text(enrollment.get("serialNumber")) or tracking
            outcome = self._enrollment_outcome(
                enrollment,
                response,
                order_id or "",
                public_key=csr_public_key(request.csr_pem),
            )
            if order_id is None and isinstance(outcome, Done) and outcome.value.certificate:
                # No id at all, but the certificate itself: its serial is the order's id.
                order_id = outcome.value.certificate.ca_certificate_id
                outcome = Done(dataclasses.replace(outcome.value, order_id=order_id))
            if order_id is None:
                raise self._parse_error("the answer has no serial or enrollment id", response, None)
            path_segment(order_id, what="Entrust order id")
        except (ResponseParseError, ConfigError) as exc:
            raise self._unreadable_submission(request, response) from exc
        return self._submitted(order_id, outcome)

    async def poll_once(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        """Look the order up once: by serial (a certificate), else by enrollment id."""
        order_id = self.check_order_id(order_id)
        segment = path_segment(order_id, what="Entrust order id")
        by_serial = _HEX_SERIAL.fullmatch(order_id) is not None
        url = (
            self._ca_url(ENTRUST.CERTIFICATE, serial=segment)
            if by_serial
            else self._ca_url(ENTRUST.STATUS, tracking_id=segment)
        )
        sent = await self._send(self._request("GET", url), order_id=order_id)
        answer = self._json_answer(sent, order_id=order_id)
        if not isinstance(answer, JsonAnswer):
            return answer
        if by_serial:
            return self._lookup_outcome(answer.body, answer.response, order_id)
        return self._enrollment_outcome(self._enrollment(answer.body), answer.response, order_id)

    def _enrollment(self, answer: Mapping[str, object]) -> Mapping[str, object]:
        nested = answer.get("enrollment")
        if isinstance(nested, dict):
            # CAGW nests the enrollment; its certificate is "body".
            return {**nested, "certificate": nested.get("certificate") or nested.get("body")}
        return answer

    def _enrollment_outcome(
        self,
        enrollment: Mapping[str, object],
        response: httpx.Response,
        order_id: str,
        *,
        public_key: bytes | None = None,
    ) -> Done[OrderStatus] | Pending | Failed:
        """An enrollment's fate: a certificate present is issued unless the status says no."""
        status = enrollment.get("status")
        if isinstance(status, str) and self._status_word(status) in FAILED_STATUSES:
            return Done(self._rejected(order_id, f"enrollment {order_id} is {status}"))
        body = _text(enrollment.get("certificate"))
        if body is not None:
            return self._certificate(body, enrollment.get("chain"), response, order_id, public_key)
        outcome = self._answer_status(enrollment, response, order_id)
        if outcome is not None:
            return outcome
        return Failed(
            self._parse_error(
                "the enrollment is ISSUED but the certificate is missing", response, order_id
            )
        )

    def _lookup_outcome(
        self, answer: Mapping[str, object], response: httpx.Response, order_id: str
    ) -> Done[OrderStatus] | Failed:
        """A ``CertificateResponse``: the certificate, or its end (revoked, held, expired)."""
        found = answer.get("certificate")
        if not isinstance(found, dict):
            return Failed(self._parse_error("the answer has no certificate", response, order_id))
        status = found.get("status")
        if isinstance(status, str) and self._status_word(status) in CERTIFICATE_FAILED_STATUSES:
            return Done(self._rejected(order_id, f"certificate {order_id} is {status}"))
        data = _text(found.get("certificateData"))
        if data is None:
            return Failed(
                self._parse_error("the certificate has no certificateData", response, order_id)
            )
        return self._certificate(data, answer.get("chain"), response, order_id, None)

    def _certificate(
        self,
        body: str,
        chain: object,
        response: httpx.Response,
        order_id: str,
        public_key: bytes | None,
    ) -> Done[OrderStatus] | Failed:
        """The issued certificate from a body (PEM or base64 DER) and a chain in any shape."""
        try:
            found = read_certificates(body, what="certificate", ca=self.ca, order_id=order_id)
            for item in _chain_items(
                chain, lambda problem: self._parse_error(problem, response, order_id)
            ):
                found += read_certificates(item, what="chain", ca=self.ca, order_id=order_id)
            certificate = issued_certificate(
                found, ca=self.ca, order_id=order_id, ca_certificate_id="", public_key=public_key
            )
        except ResponseParseError as exc:
            return Failed(self._triage.scrubbed(exc))
        certificate = dataclasses.replace(
            certificate, ca_certificate_id=hex_serial(int(certificate.serial))
        )
        return self._issued(order_id, certificate)

    async def _send_revocation(
        self, certificate_id: str, reason: RevocationReason, comment: str | None
    ) -> httpx.Response | Pending | Failed:
        """``POST`` a ``RevokeAction`` for a hexadecimal serial, as :func:`hex_serial` writes
        it (a :class:`Certificate`'s ``ca_certificate_id``). CAGW records ``comment``.
        """
        serial = path_segment(certificate_id, what="Entrust certificate serial")
        name = self._wire_reason(reason, ENTRUST.REVOCATION_REASONS)
        body = {
            "action": {
                "type": "RevokeAction",
                "reason": name,
                "comment": comment if comment is not None else f"revoked through certpoll: {name}",
            }
        }
        sent = await self._send(
            self._request("POST", self._ca_url(ENTRUST.ACTIONS, serial=serial), body)
        )
        if isinstance(sent, httpx.Response):
            refused = self._refused_action(sent, serial)
            if refused is not None:
                return Failed(refused)
        return sent

    def _refused_action(self, response: httpx.Response, serial: str) -> PermanentError | None:
        """The error for a 2xx ``ActionResponse`` whose ``action.status`` is ``REJECTED``.

        CAGW answers an action it turned down with a 2xx and that status (Keyfactor's CAGW
        gateway fails the revocation on it); any other answer, or none, is an accepted one.
        """
        try:
            answer = self._json(response, order_id=None)
        except ResponseParseError:
            return None
        action = answer.get(ENTRUST.ACTION)
        status = action.get(ENTRUST.STATUS_FIELD) if isinstance(action, dict) else None
        if not isinstance(status, str) or self._status_word(status) != _ACTION_REJECTED:
            return None
        return PermanentError(
            f"{self.ca} POST {self.redact(response.request.url.path)}: the revocation of "
            f"{serial} was {self.redact(status)[:64]}",
            ca=self.ca,
            status_code=response.status_code,
            body_excerpt=self._triage.excerpt(response),
        )
