"""The simulated GlobalSign Atlas HVCA v2: mTLS, a bearer token, certificates by serial."""

from __future__ import annotations

import json
import re
import secrets
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..._models import CAName
from ..._wire import GLOBALSIGN, MOUNTS
from .._http import (
    ErrorCode,
    Headers,
    Request,
    Response,
    Route,
    json_response,
    problem_json,
    same,
    str_list,
)
from .._orders import Clock, Credentials, OrderBook
from .._pki import BadCSR, csr_names, load_csr, pem, public_key_from_pem, unusable_names
from ._base import SimulatedService, hex_serial

__all__ = ["GlobalSignService"]


class GlobalSignService(SimulatedService):
    """HVCA: a login for a short-lived token, ``problem+json`` errors, serials as ids.

    :attr:`token_lifetime` is the life of a token in simulated seconds.
    """

    name: ClassVar[CAName] = "globalsign"
    mtls: ClassVar[bool] = True

    def __init__(
        self,
        *,
        book: OrderBook,
        credentials: Credentials,
        now: Clock,
        token_lifetime: float,
    ) -> None:
        super().__init__(book=book, credentials=credentials, now=now)
        self.token_lifetime = token_lifetime
        self._tokens: dict[str, float] = {}

    def routes(self) -> list[Route]:
        return [
            self.route("POST", GLOBALSIGN.LOGIN, "login", self._login),
            self.route("POST", GLOBALSIGN.SUBMIT, "submit", self._submit),
            self.route("GET", GLOBALSIGN.CERTIFICATE, "status", self._status),
            self.route("PATCH", GLOBALSIGN.CERTIFICATE, "revoke", self._revoke),
            self.route("GET", GLOBALSIGN.TRUSTCHAIN, "trustchain", self._trustchain),
        ]

    def error_response(self, status: int, text: str, code: ErrorCode, headers: Headers) -> Response:
        return problem_json(status, code, text, headers)

    def authenticate(self, request: Request, route: Route) -> Response | None:
        if route.name == "globalsign.login":
            return None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        expiry = self._tokens.get(value) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= self.now():
            return self.error(401, "invalid or expired access token", code=401)
        return None

    def expire_tokens(self) -> None:
        """Expire every access token now."""
        self._tokens.clear()

    def order_ids(self, number: int, serial: int) -> tuple[str, str]:
        return hex_serial(serial), hex_serial(serial)

    def _bad(self, message: str) -> Response:
        return self.error(400, message, code=400)

    def _login(self, request: Request, match: re.Match[str]) -> Response:
        body = request.json() or {}
        key, secret = body.get(GLOBALSIGN.API_KEY), body.get(GLOBALSIGN.API_SECRET)
        creds = self.credentials
        if not (
            isinstance(key, str)
            and isinstance(secret, str)
            and same(key, creds.globalsign_api_key) & same(secret, creds.globalsign_api_secret)
        ):
            return self.error(401, "invalid API credentials", code=401)
        now = self.now()
        for stale in [t for t, expiry in self._tokens.items() if expiry <= now]:
            del self._tokens[stale]
        token = f"{creds.globalsign_token_prefix}-{secrets.token_urlsafe(18)}"
        self._tokens[token] = now + self.token_lifetime
        return json_response(200, {GLOBALSIGN.ACCESS_TOKEN: token})

    def _submit(self, request: Request, match: re.Match[str]) -> Response:
        body = request.json()
        if body is None:
            return self._bad("invalid request body")
        subject = body.get(GLOBALSIGN.SUBJECT_DN, {})
        san = body.get(GLOBALSIGN.SAN, {})
        if not isinstance(subject, dict) or not isinstance(san, dict):
            return self._bad("invalid subject_dn or san")
        dns = san.get(GLOBALSIGN.DNS_NAMES, [])
        if not str_list(dns):
            return self._bad("san.dns_names must be a list")
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
            return self._bad("invalid CSR or public key")
        if not isinstance(common_name, str) or not common_name:
            return self._bad("subject_dn.common_name is required")
        if (why := unusable_names(common_name, dns)) is not None:
            return self._bad(f"invalid subject_dn or san: {why}")
        order = self.new_order(common_name=common_name, dns_names=dns, public_key=public_key)
        self.book.phase(order)
        location = f"{request.origin}{MOUNTS[self.name]}/certificates/{order.order_id}"
        return Response(201, content_type=None, headers=(("Location", location),))

    def _status(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup(self.name, match["serial"].upper())
        if order is None:
            return self.error(404, "certificate not found", code=404)

        def answer() -> Response:
            phase = self.book.phase(order)
            if phase in ("approval", "processing"):
                words = "awaiting approval" if phase == "approval" else "being issued"
                content = json.dumps({GLOBALSIGN.DESCRIPTION: f"certificate is {words}"})
                return Response(202, content.encode(), "application/problem+json")
            if phase == "rejected":
                # HVCA's description: the lookup is answered 422 "when the issuing backend
                # could not validate the issuance request".
                return self.error(
                    GLOBALSIGN.VALIDATION_FAILED, GLOBALSIGN.VALIDATION_ERROR, code=422
                )
            assert order.certificate is not None
            word = GLOBALSIGN.ISSUED if phase == "issued" else GLOBALSIGN.REVOKED
            return json_response(
                200,
                {
                    GLOBALSIGN.STATUS_FIELD: word,
                    GLOBALSIGN.CERTIFICATE_FIELD: pem(order.certificate),
                    GLOBALSIGN.CHAIN: self.pki.chain_pem,
                    GLOBALSIGN.SERIAL_NUMBER: order.order_id,
                    GLOBALSIGN.UPDATED_AT: int(order.certificate.not_valid_before_utc.timestamp()),
                },
            )

        return self.scripted(order, answer)

    def _revoke(self, request: Request, match: re.Match[str]) -> Response:
        order = self.book.lookup(self.name, match["serial"].upper())
        if order is None:
            return self.error(404, "certificate not found", code=404)
        body = request.json() if request.body.strip() else {}
        if body is None:
            return self._bad("invalid request body")
        if self.book.phase(order) != "issued":
            return self.error(409, "certificate is not issued", code=409)
        order.revoked = str(body.get("revocation_reason", "unspecified"))
        return Response(204, content_type=None)

    def _trustchain(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, [pem(self.pki.intermediate.certificate), self.pki.root_pem])
