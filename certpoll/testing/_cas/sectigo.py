"""The simulated Sectigo Certificate Manager REST API: header login, enroll, collect."""

from __future__ import annotations

import re
import secrets
from typing import ClassVar, Final

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from ..._models import CAName
from ..._wire import SECTIGO
from .._http import ErrorCode, Headers, Request, Response, Route, json_response, same
from .._orders import Order, OrderPhase
from .._pki import BadCSR, csr_names, load_csr, pem, unusable_names
from ._base import SimulatedService, hex_serial

__all__ = ["SectigoService"]

_WORDS: Final[dict[OrderPhase, str]] = {
    "approval": SECTIGO.REQUESTED,
    "processing": SECTIGO.APPLIED,
    "issued": SECTIGO.ISSUED,
    "rejected": SECTIGO.REJECTED,
    "revoked": SECTIGO.REVOKED,
}


class SectigoService(SimulatedService):
    """Sectigo: three login headers, ``{"code", "description"}`` errors, collect codes."""

    name: ClassVar[CAName] = "sectigo"

    def routes(self) -> list[Route]:
        return [
            self.route("POST", SECTIGO.ENROLL, "enroll", self._enroll),
            self.route("GET", SECTIGO.STATUS, "status", self._status),
            self.route("GET", SECTIGO.COLLECT, "collect", self._collect),
            self.route("GET", SECTIGO.COLLECT + "/{format}", "collect", self._collect),
            self.route("POST", SECTIGO.REVOKE, "revoke", self._revoke),
        ]

    def error_response(self, status: int, text: str, code: ErrorCode, headers: Headers) -> Response:
        body = {"code": code if isinstance(code, int) else 0, "description": text}
        return json_response(status, body, headers=headers)

    def authenticate(self, request: Request, route: Route) -> Response | None:
        creds, h = self.credentials, request.headers
        if not (
            same(h.get(SECTIGO.CUSTOMER_URI_HEADER.lower(), ""), creds.sectigo_customer_uri)
            & same(h.get(SECTIGO.LOGIN_HEADER.lower(), ""), creds.sectigo_login)
            & same(h.get(SECTIGO.PASSWORD_HEADER.lower(), ""), creds.sectigo_password)
        ):
            return self.error(401, "Unknown user", code=SECTIGO.UNKNOWN_USER)
        return None

    def _bad(self, code: int, message: str) -> Response:
        return self.error(400, message, code=code)

    def _enroll(self, request: Request, match: re.Match[str]) -> Response:
        body = request.json()
        if body is None:
            return self._bad(SECTIGO.INVALID_REQUEST, "Invalid request body")
        creds = self.credentials
        for field, expected in (
            (SECTIGO.ORG_ID, creds.sectigo_org_id),
            (SECTIGO.CERT_TYPE, creds.sectigo_cert_type),
        ):
            value = body.get(field)
            if type(value) is not int or value != expected:
                return self._bad(SECTIGO.INVALID_REQUEST, f"Invalid or missing '{field}'")
        term = body.get(SECTIGO.TERM)
        if type(term) is not int or term not in SECTIGO.TERMS:
            return self._bad(SECTIGO.INVALID_TERM, "Invalid term")
        alt = body.get(SECTIGO.SUBJ_ALT_NAMES, "")
        if not isinstance(alt, str):
            return self._bad(SECTIGO.INVALID_REQUEST, "Invalid 'subjAltNames'")
        csr_text = body.get(SECTIGO.CSR)
        try:
            csr = load_csr(csr_text if isinstance(csr_text, str) else "")
            common_name, csr_dns = csr_names(csr)
            dns_names = [*csr_dns, *(n.strip() for n in alt.split(",") if n.strip())]
            common_name = common_name or (dns_names[0] if dns_names else None)
            if common_name is None:
                raise BadCSR("the CSR names nothing")
        except BadCSR:
            return self._bad(SECTIGO.INVALID_CSR, "CSR is not valid")
        if (why := unusable_names(common_name, dns_names)) is not None:
            return self._bad(SECTIGO.INVALID_REQUEST, f"Invalid 'subjAltNames': {why}")
        order = self.new_order(
            common_name=common_name, dns_names=dns_names, public_key=csr.public_key()
        )
        self.book.phase(order)
        return json_response(
            200, {SECTIGO.SSL_ID: int(order.order_id), SECTIGO.RENEW_ID: secrets.token_hex(8)}
        )

    def _order(self, match: re.Match[str]) -> Order | Response:
        order = self.book.lookup(self.name, str(int(match["ssl_id"])))
        if order is None:
            return self.error(404, "Certificate not found", code=SECTIGO.NOT_FOUND)
        return order

    def _status(self, request: Request, match: re.Match[str]) -> Response:
        order = self._order(match)
        if isinstance(order, Response):
            return order

        def answer() -> Response:
            phase = self.book.phase(order)
            body: dict[str, object] = {
                SECTIGO.SSL_ID: int(order.order_id),
                SECTIGO.COMMON_NAME: order.common_name,
                SECTIGO.STATUS_FIELD: _WORDS[phase],
                "subjectAlternativeNames": ",".join(order.dns_names),
                "orgId": self.credentials.sectigo_org_id,
                "certType": self.credentials.sectigo_cert_type,
            }
            if order.certificate is not None:
                body[SECTIGO.SERIAL_NUMBER] = hex_serial(order.serial)
            return json_response(200, body)

        return self.scripted(order, answer)

    def _collect(self, request: Request, match: re.Match[str]) -> Response:
        order = self._order(match)
        if isinstance(order, Response):
            return order
        groups = match.groupdict()
        fmt = groups.get("format") or request.query.get("format", "base64")
        phase = self.book.phase(order)
        if phase in ("approval", "processing"):
            return self._bad(SECTIGO.BEING_PROCESSED, "The request is being processed by Sectigo.")
        if phase == "rejected":
            return self._bad(SECTIGO.NOT_ISSUED, "SSL state is not 'ISSUED'")
        if phase == "revoked":
            return self._bad(SECTIGO.REVOKED_CANNOT_DOWNLOAD, "Certificate has been revoked")
        script = order.script
        if self.now() - order.created < script.ready_after + script.collect_not_ready_for:
            return self._bad(SECTIGO.NOT_COLLECTABLE, "Certificate is not collectable.")
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
            if script.awkward:
                # Root first whatever the format says, as the x509 bundle is.
                certificates = [c for c in [*reversed(chain), leaf] if c in certificates]
            text = "".join(pem(c) for c in certificates).replace("\n", "\r\n").encode()
        elif fmt == "base64":
            text = pkcs7.serialize_certificates([leaf, *chain], Encoding.PEM)
        elif fmt == "bin":
            text = pkcs7.serialize_certificates([leaf, *chain], Encoding.DER)
        else:
            return self._bad(SECTIGO.INVALID_REQUEST, f"Unsupported format '{fmt[:32]}'")
        return Response(
            200,
            text,
            "application/octet-stream",
            (("Content-Disposition", f"attachment; filename={order.order_id}.crt"),),
        )

    def _revoke(self, request: Request, match: re.Match[str]) -> Response:
        order = self._order(match)
        if isinstance(order, Response):
            return order
        body = request.json()
        reason = body.get(SECTIGO.REASON) if body is not None else None
        code = body.get(SECTIGO.REASON_CODE, 0) if body is not None else None
        if not isinstance(reason, str) or not 1 <= len(reason) <= 512:
            return self._bad(SECTIGO.INVALID_REQUEST, "'reason' must be 1 to 512 characters")
        if type(code) is not int or code not in SECTIGO.REASON_CODES:
            return self._bad(SECTIGO.INVALID_REQUEST, "Invalid 'reasonCode'")
        if self.book.phase(order) != "issued":
            return self._bad(
                SECTIGO.ONLY_ISSUED_REVOKED, "Only issued certificates could be revoked"
            )
        order.revoked = f"{code}: {reason}"
        return Response(204, content_type=None)
