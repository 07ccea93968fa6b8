"""Entrust CA Gateway (CAGW, also PKI-as-a-Service): :class:`Entrust`.

Authentication is the client certificate alone (mTLS, see :class:`~certpoll.MTLSTransport`).
An enrollment is submitted with ``POST /v1/certificate-authorities/{caId}/enrollments`` and
watched with ``GET .../enrollments/{trackingId}``; the certificate comes in that answer.
Revocation is ``POST .../certificates/{serial}/actions`` with a ``RevokeAction``, where the
serial is **hexadecimal** (the form Entrust's own CAGW tools ask for).

Both answer shapes seen in the wild are read: the flat one (``trackingId``, ``status``,
``certificate``, ``chain``) and CAGW's nested one (``{"enrollment": {"id", "status",
"body"}}``). Status words are compared case-insensitively.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping
from typing import ClassVar, final

import httpx

from .._certs import certificate_from_pem
from .._connector import Connector, path_segment
from .._errors import ConfigError, ResponseParseError
from .._models import (
    CAName,
    Certificate,
    CertificateRequest,
    OrderStatus,
    RevocationReason,
)
from .._mtls import mtls_mounts
from .._outcomes import Done, Failed, Pending
from .._settings import EntrustSettings

__all__ = ["REVOCATION_REASONS", "Entrust", "hex_serial"]

#: Enrollment statuses that mean "not yet" (approval workflows can hold one for days: set
#: ``poll_max_wait_seconds`` to 86400 for those).
PENDING_STATUSES = frozenset(
    {"PENDING", "PROCESSING", "AWAITING_APPROVAL", "PENDING_QUORUM", "APPROVED"}
)
#: Enrollment statuses that are a final "no".
FAILED_STATUSES = frozenset({"REJECTED", "DENIED", "FAILED", "DECLINED"})

#: RFC 5280 reasons by the names CAGW's ``RevokeAction`` takes.
REVOCATION_REASONS: Mapping[RevocationReason, str] = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "keyCompromise",
    RevocationReason.CA_COMPROMISE: "caCompromise",
    RevocationReason.AFFILIATION_CHANGED: "affiliationChanged",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    RevocationReason.CERTIFICATE_HOLD: "certificateHold",
    RevocationReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
}

_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) [A-Z ]+-----")
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


@final
class Entrust(Connector[EntrustSettings]):
    """Entrust CA Gateway, over mTLS.

    >>> async with certpoll.Entrust(certpoll.EntrustSettings()) as entrust:  # doctest: +SKIP
    ...     order = await entrust.issue(request)
    ...     status = await entrust.get_order_status(order.order_id)

    Without ``http=`` the connector creates its own client with an :class:`MTLSTransport`
    mounted for ``api_url``; a shared client must mount one itself (see
    :func:`certpoll.mtls_mounts`). Order ids are CAGW tracking (enrollment) ids.
    """

    ca: ClassVar[CAName] = "entrust"
    order_noun: ClassVar[str] = "enrollment"
    pending_words: ClassVar[frozenset[str]] = PENDING_STATUSES
    failed_words: ClassVar[frozenset[str]] = FAILED_STATUSES
    issued_word: ClassVar[str] = "ISSUED"

    @staticmethod
    def _status_word(status: str) -> str:
        """CA Gateway's words are upper case; be lenient about case and spaces."""
        return status.strip().upper()

    @property
    def base_url(self) -> str:
        """``settings.api_url`` without a trailing slash."""
        return self.settings.api_url.rstrip("/")

    def _default_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.settings.attempt_timeout_seconds, mounts=mtls_mounts(self.settings)
        )

    def _ca_url(self, *segments: str) -> str:
        ca_id = path_segment(self.settings.ca_id, what="Entrust CA id")
        return self.url("v1", "certificate-authorities", ca_id, *segments)

    def _request(
        self, method: str, url: str, body: Mapping[str, object] | None = None
    ) -> httpx.Request:
        return self.http.build_request(
            method, url, headers={"Accept": "application/json"}, json=body
        )

    async def issue(self, request: CertificateRequest) -> OrderStatus:
        """Submit one enrollment: ``ISSUED`` if CAGW issued it at once.

        A rejection in the answer comes back ``FAILED``; anything else ``PENDING``. Never
        retried: an answer that leaves the order's fate open raises
        :class:`SubmissionUncertain`.
        """
        body: dict[str, object] = {
            "csr": _csr_base64(request.csr_pem),
            "requiredFormat": {"format": "PEM"},
            "optionalCertificateRequestDetails": {"subjectDn": _subject_dn(request.common_name)},
        }
        if self.settings.profile_id:
            body["profileId"] = self.settings.profile_id
        if request.sans:
            body["subjectAltNames"] = [{"type": "dNSName", "value": san} for san in request.sans]
        response = await self._submit(
            self._request("POST", self._ca_url("enrollments"), body),
            certificate_request=request,
        )
        try:
            answer = self._json(response, order_id=None)
            enrollment = self._enrollment(answer)
            order_id = _text(enrollment.get("trackingId")) or _text(enrollment.get("id"))
            if order_id is None:
                raise self._parse_error("the answer has no tracking id", response, None)
            path_segment(order_id, what="Entrust tracking id")
        except (ResponseParseError, ConfigError) as exc:
            raise self._unreadable_submission(request, response) from exc
        return self._submitted(order_id, self._outcome(enrollment, response, order_id))

    async def poll_once(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        """Look at the enrollment once; the certificate comes in the same answer."""
        order_id = self.check_order_id(order_id)
        segment = path_segment(order_id, what="Entrust tracking id")
        sent = await self._send(
            self._request("GET", self._ca_url("enrollments", segment)), order_id=order_id
        )
        if not isinstance(sent, httpx.Response):
            return sent
        try:
            enrollment = self._enrollment(self._json(sent, order_id=order_id))
        except ResponseParseError as exc:
            return Failed(exc)
        return self._outcome(enrollment, sent, order_id)

    def _enrollment(self, answer: Mapping[str, object]) -> Mapping[str, object]:
        nested = answer.get("enrollment")
        if isinstance(nested, dict):
            # CAGW nests the enrollment; its PEM is "body".
            return {**nested, "certificate": nested.get("certificate") or nested.get("body")}
        return answer

    def _outcome(
        self, enrollment: Mapping[str, object], response: httpx.Response, order_id: str
    ) -> Done[OrderStatus] | Pending | Failed:
        status = enrollment.get("status")
        if not isinstance(status, str):
            return Failed(self._parse_error("the answer has no status", response, order_id))
        outcome = self._status_outcome(status, order_id=order_id)
        if outcome is not None:
            return outcome
        pem = _text(enrollment.get("certificate"))
        if pem is None:
            return Failed(
                self._parse_error(
                    "the enrollment is ISSUED but the certificate is missing", response, order_id
                )
            )
        chain = _text(enrollment.get("chain")) or ""
        try:
            certificate = certificate_from_pem(
                pem, ca=self.ca, order_id=order_id, ca_certificate_id="", chain=chain
            )
        except ResponseParseError as exc:
            return Failed(exc)
        certificate = dataclasses.replace(
            certificate, ca_certificate_id=hex_serial(int(certificate.serial))
        )
        return self._issued(order_id, certificate)

    async def revoke(
        self,
        certificate: Certificate | str,
        *,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        comment: str | None = None,
    ) -> None:
        """Revoke a certificate with a ``RevokeAction``, by its hexadecimal serial.

        ``certificate`` is a :class:`Certificate` (its ``ca_certificate_id``, the serial as
        :func:`hex_serial` writes it, is used) or that serial itself. ``comment`` is recorded
        by the CA (default: the reason). A refusal raises the triaged error.
        """
        raw = certificate.ca_certificate_id if isinstance(certificate, Certificate) else certificate
        serial = path_segment(raw, what="Entrust certificate serial")
        try:
            name = REVOCATION_REASONS[RevocationReason(reason)]
        except ValueError as exc:
            raise ConfigError(f"{reason!r} is not a RevocationReason") from exc
        body = {
            "action": {
                "type": "RevokeAction",
                "reason": name,
                "comment": comment if comment is not None else f"revoked through certpoll: {name}",
            }
        }
        sent = await self._send(
            self._request("POST", self._ca_url("certificates", serial, "actions"), body)
        )
        if not isinstance(sent, httpx.Response):
            raise self._raise_for(sent)
