"""The simulated DigiCert CertCentral Services API v2: API key, rate limits, orders."""

from __future__ import annotations

import re
from collections import deque
from typing import ClassVar, Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..._models import CAName
from ..._wire import DIGICERT
from .._http import ErrorCode, Headers, Request, Response, Route, json_response, same, str_list
from .._orders import Clock, Credentials, OrderBook, OrderPhase
from .._pki import BadCSR, load_csr, pem, unusable_names
from ._base import SimulatedService, hex_serial

__all__ = ["DigiCertService"]

_WORDS: Final[dict[OrderPhase, str]] = {
    "approval": DIGICERT.NEEDS_APPROVAL,
    "processing": DIGICERT.PENDING,
    "issued": DIGICERT.ISSUED,
    "rejected": DIGICERT.REJECTED,
    "revoked": DIGICERT.REVOKED,
}

#: DigiCert's certificate ids are apart from its order ids.
_CERTIFICATE_ID_OFFSET: Final = 100000000


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


class DigiCertService(SimulatedService):
    """DigiCert: ``X-DC-DEVKEY``, the documented rolling rate limits, errors as a list."""

    name: ClassVar[CAName] = "digicert"

    def __init__(
        self,
        *,
        book: OrderBook,
        credentials: Credentials,
        now: Clock,
        rate_limits: tuple[tuple[int, float], ...],
    ) -> None:
        super().__init__(book=book, credentials=credentials, now=now)
        self.rate_limits = rate_limits
        self._windows: dict[str, deque[float]] = {}
        #: The 429s a client earned by breaking the rate limits (not scripted).
        self.limits_exceeded = 0

    def order_ids(self, number: int, serial: int) -> tuple[str, str]:
        return str(number), str(number + _CERTIFICATE_ID_OFFSET)

    def routes(self) -> list[Route]:
        return [
            self.route("POST", DIGICERT.SUBMIT, "submit", self._submit),
            self.route("GET", DIGICERT.STATUS, "status", self._status),
            self.route("GET", DIGICERT.DOWNLOAD, "download", self._download),
            self.route("PUT", DIGICERT.REVOKE, "revoke", self._revoke),
        ]

    def error_response(self, status: int, text: str, code: ErrorCode, headers: Headers) -> Response:
        if status == 429:
            code, text = DIGICERT.RATE_LIMIT_CODE, DIGICERT.RATE_LIMIT_MESSAGE
        body = {"errors": [{"code": code or "error", "message": text}]}
        return json_response(status, body, headers=headers)

    def authenticate(self, request: Request, route: Route) -> Response | None:
        key = request.headers.get(DIGICERT.API_KEY_HEADER.lower(), "")
        if not same(key, self.credentials.digicert_api_key):
            return self.error(401, "The specified API key is invalid.", code="invalid_key")
        if not self._admit(key):
            self.limits_exceeded += 1
            return self.error(429, DIGICERT.RATE_LIMIT_MESSAGE)
        return None

    def _admit(self, key: str) -> bool:
        """DigiCert's rolling windows; only admitted requests count against them."""
        if not self.rate_limits:
            return True
        now = self.now()
        times = self._windows.setdefault(key, deque())
        longest = max(window for _, window in self.rate_limits)
        while times and times[0] <= now - longest:
            times.popleft()
        for limit, window in self.rate_limits:
            # Sorted times: the window is full when the limit-th latest one is inside it.
            if len(times) >= limit and times[-limit] > now - window:
                return False
        times.append(now)
        return True

    def _bad(self, code: str, message: str) -> Response:
        return self.error(400, message, code=code)

    def _submit(self, request: Request, match: re.Match[str]) -> Response:
        body = request.json()
        if body is None:
            return self._bad("invalid_json", "The request body is not a JSON object.")
        certificate = body.get(DIGICERT.CERTIFICATE)
        organization = body.get(DIGICERT.ORGANIZATION)
        if not isinstance(certificate, dict):
            return self._bad("missing_param", "certificate is required.")
        common_name = certificate.get(DIGICERT.COMMON_NAME)
        csr_text = certificate.get(DIGICERT.CSR)
        dns_names = certificate.get(DIGICERT.DNS_NAMES, [])
        if not isinstance(common_name, str) or not common_name.strip():
            return self._bad("missing_param", "certificate.common_name is required.")
        if not isinstance(csr_text, str):
            return self._bad("missing_param", "certificate.csr is required.")
        if not str_list(dns_names):
            return self._bad("invalid_param", "certificate.dns_names must be a list of names.")
        org_id = organization.get("id") if isinstance(organization, dict) else None
        if type(org_id) is not int:
            return self._bad("missing_param", "organization.id is required.")
        if org_id != self.credentials.digicert_org_id:
            return self._bad("invalid_organization", "Organization not found.")
        try:
            csr = load_csr(csr_text)
        except BadCSR:
            return self._bad("invalid_csr", "The CSR is invalid.")
        assert isinstance(dns_names, list)
        if (why := unusable_names(common_name, dns_names)) is not None:
            return self._bad("invalid_param", f"certificate: {why}.")
        order = self.new_order(
            common_name=common_name, dns_names=dns_names, public_key=csr.public_key()
        )
        phase = self.book.phase(order)
        answer: dict[str, object] = {DIGICERT.ID: int(order.order_id)}
        if phase != "issued":
            answer[DIGICERT.REQUESTS] = [{"id": int(order.order_id), "status": "pending"}]
            return json_response(201, answer)
        # Issued at once: the certificate and its chain come in the order's own answer,
        # one PEM per entry with CRLF line ends, and there is no "status".
        assert order.certificate is not None
        entries = [
            (order.common_name, pem(order.certificate)),
            *((_common_name(c), pem(c)) for c in self.pki.chain),
        ]
        answer[DIGICERT.REQUESTS] = [{"id": int(order.order_id), "status": "approved"}]
        answer[DIGICERT.CERTIFICATE_ID] = int(order.certificate_id)
        answer[DIGICERT.CERTIFICATE_CHAIN] = [
            {"subject_common_name": name, "pem": text.replace("\n", "\r\n")}
            for name, text in entries
        ]
        return json_response(201, answer)

    def _status(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup(self.name, match["order_id"])
        if order is None:
            return self.error(404, "Order not found.", code="not_found")

        def answer() -> Response:
            phase = self.book.phase(order)
            certificate: dict[str, object] = {
                "id": int(order.certificate_id),
                "common_name": order.common_name,
                "dns_names": list(order.dns_names),
            }
            if order.certificate is not None:
                certificate[DIGICERT.SERIAL_NUMBER] = hex_serial(order.serial)
                certificate["valid_from"] = order.certificate.not_valid_before_utc.isoformat()
                certificate["valid_till"] = order.certificate.not_valid_after_utc.isoformat()
            return json_response(
                200,
                {
                    DIGICERT.ID: int(order.order_id),
                    DIGICERT.STATUS_FIELD: _WORDS[phase],
                    DIGICERT.CERTIFICATE: certificate,
                    DIGICERT.ORGANIZATION: {"id": self.credentials.digicert_org_id},
                },
            )

        return self.scripted(order, answer)

    def _download(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup_certificate(self.name, match["certificate_id"])
        if order is None:
            return self.error(404, "Certificate not found.", code="not_found")
        if self.book.phase(order) not in ("issued", "revoked"):
            return self.error(404, "Certificate not issued.", code="not_found")
        assert order.certificate is not None
        bundle = pem(order.certificate) + self.pki.chain_pem
        return Response(200, bundle.encode(), "application/x-pem-file")

    def _revoke(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup_certificate(self.name, match["certificate_id"])
        if order is None:
            return self.error(404, "Certificate not found.", code="not_found")
        if request.body.strip() and request.json() is None:
            return self._bad("invalid_json", "The request body is not a JSON object.")
        if self.book.phase(order) != "issued":
            return self._bad("invalid_status", "Only issued certificates can be revoked.")
        body = request.json() or {}
        reason = body.get("revocation_reason", body.get("reason", "unspecified"))
        order.revoked = str(reason)
        if body.get("skip_approval") is True:
            return Response(204, content_type=None)
        # Without skip_approval DigiCert answers with the revoke request it now holds.
        return json_response(
            201,
            {
                "id": order.requests,
                "date": "2016-02-10T17:06:15+00:00",
                "type": "revoke",
                "status": "pending",
                "comments": str(body.get("comments", ""))[:512],
            },
        )
