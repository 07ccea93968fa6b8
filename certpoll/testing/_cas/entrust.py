"""The simulated Entrust CA Gateway v1: mTLS, enrollments, certificate lookup, actions."""

from __future__ import annotations

import base64
import re
import secrets
from typing import ClassVar, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..._models import CAName
from ..._wire import ENTRUST
from .._http import ErrorCode, Handler, Headers, Request, Response, Route, json_response
from .._orders import Order, OrderPhase
from .._pki import BadCSR, csr_names, load_csr, pem, unusable_names
from ._base import SimulatedService

__all__ = ["EntrustService"]

_WORDS: Final[dict[OrderPhase, str]] = {
    "approval": ENTRUST.AWAITING_APPROVAL,
    "processing": ENTRUST.PENDING,
    "issued": ENTRUST.ISSUED,
    "rejected": ENTRUST.REJECTED,
    "revoked": ENTRUST.REVOKED,
}


def _der64(certificate: x509.Certificate) -> str:
    """A certificate as CAGW's certificateData: base64 DER on one line."""
    return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")


class EntrustService(SimulatedService):
    """Entrust CAGW: a client certificate, one CA id, ``ErrorResponse`` errors."""

    name: ClassVar[CAName] = "entrust"
    mtls: ClassVar[bool] = True

    def routes(self) -> list[Route]:
        return [
            self.route("POST", ENTRUST.ENROLL, "enroll", self._of_our_ca(self._enroll)),
            self.route("GET", ENTRUST.STATUS, "status", self._of_our_ca(self._status)),
            self.route("GET", ENTRUST.CERTIFICATE, "status", self._of_our_ca(self._certificate)),
            self.route("POST", ENTRUST.ACTIONS, "revoke", self._of_our_ca(self._actions)),
        ]

    def error_response(self, status: int, text: str, code: ErrorCode, headers: Headers) -> Response:
        body = {"type": ENTRUST.ERROR_TYPE, "error": {"code": code or status, "message": text}}
        return json_response(status, body, headers=headers)

    def order_ids(self, number: int, serial: int) -> tuple[str, str]:
        return f"ENR-{number:08d}", str(number)

    def find(self, order_id: str) -> Order | None:
        """By enrollment id or by serial (hex): the two ids the connector may hold."""
        found = self.book.get(self.name, order_id)
        return found if found is not None else self.book.by_hex_serial(self.name, order_id)

    def _bad(self, message: str, code: str = "BAD_REQUEST") -> Response:
        return self.error(400, message, code=code)

    def _of_our_ca(self, handler: Handler) -> Handler:
        """``handler`` for the account's CA id; any other id is an unknown CA (404)."""

        def checked(request: Request, match: re.Match[str]) -> Response:
            if match["ca_id"] != self.credentials.entrust_ca_id:
                return self.error(404, "Unknown certificate authority", code="NOT_FOUND")
            return handler(request, match)

        return checked

    def _enrollment(self, order: Order, status: int) -> Response:
        phase = self.book.phase(order)
        word = _WORDS[phase]
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
        return json_response(status, {"type": "EnrollmentResponse", ENTRUST.ENROLLMENT: enrollment})

    def _enroll(self, request: Request, match: re.Match[str]) -> Response:
        body = request.json()
        if body is None:
            return self._bad("Invalid request body")
        wanted = self.credentials.entrust_profile_id
        if wanted is not None and body.get(ENTRUST.PROFILE_ID) != wanted:
            return self._bad("Unknown profile")
        alt = body.get(ENTRUST.SUBJECT_ALT_NAMES, [])
        if not isinstance(alt, list) or not all(
            isinstance(a, dict)
            and isinstance(a.get("type"), str)
            and isinstance(a.get("value"), str)
            for a in alt
        ):
            return self._bad("Invalid subjectAltNames")
        dns = [str(a["value"]) for a in alt if a["type"] == "dNSName"]
        required = body.get(ENTRUST.REQUIRED_FORMAT)
        answer_format = required.get("format") if isinstance(required, dict) else None
        if answer_format not in ENTRUST.FORMATS:
            return self._bad("Unsupported requiredFormat")
        csr_text = body.get(ENTRUST.CSR)
        try:
            csr = load_csr(csr_text if isinstance(csr_text, str) else "")
            common_name, csr_dns = csr_names(csr)
            dns = [*csr_dns, *dns]
            common_name = common_name or (dns[0] if dns else None)
            if common_name is None:
                raise BadCSR("the CSR names nothing")
        except BadCSR:
            return self._bad("Invalid CSR", code="INVALID_CSR")
        if (why := unusable_names(common_name, dns)) is not None:
            return self._bad(f"Invalid subject: {why}")
        order = self.new_order(common_name=common_name, dns_names=dns, public_key=csr.public_key())
        order.answer_format = str(answer_format)
        return self._enrollment(order, 201)

    def _status(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup(self.name, match["tracking_id"])
        if order is None:
            return self.error(404, "Enrollment not found", code="NOT_FOUND")
        return self.scripted(order, lambda: self._enrollment(order, 200))

    def _certificate(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup_serial(self.name, match["serial"])
        if order is None or self.book.phase(order) not in ("issued", "revoked"):
            return self.error(404, "Certificate not found", code="NOT_FOUND")

        def answer() -> Response:
            leaf = order.certificate
            assert leaf is not None
            revoked = self.book.phase(order) == "revoked"
            found = {
                ENTRUST.STATUS_FIELD: ENTRUST.CERTIFICATE_REVOKED if revoked else ENTRUST.NORMAL,
                ENTRUST.SERIAL_NUMBER: format(order.serial, "x"),
                "subjectName": f"cn={order.common_name}",
                "validityPeriod": f"{leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}/"
                f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
                ENTRUST.CERTIFICATE_DATA: _der64(leaf),
            }
            chain = [{ENTRUST.CERTIFICATE_DATA: _der64(c)} for c in self.pki.chain]
            return json_response(
                200,
                {
                    "type": "CertificateResponse",
                    ENTRUST.CERTIFICATE_FIELD: found,
                    ENTRUST.CHAIN: chain,
                },
            )

        return self.scripted(order, answer)

    def _actions(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup_serial(self.name, match["serial"])
        if order is None:
            return self.error(404, "Certificate not found", code="NOT_FOUND")
        body = request.json()
        action = body.get(ENTRUST.ACTION) if body is not None else None
        if not isinstance(action, dict) or action.get("type") != ENTRUST.REVOKE_ACTION:
            return self._bad("Unsupported action")
        reason = action.get("reason", "unspecified")
        if not isinstance(reason, str) or reason.lower() not in ENTRUST.REASONS:
            return self._bad("Invalid revocation reason")
        if self.book.phase(order) != "issued":
            return self._bad("Certificate is not active", code="BAD_STATE")
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
        return json_response(200, {"type": "ActionResponse", ENTRUST.ACTION: done})
