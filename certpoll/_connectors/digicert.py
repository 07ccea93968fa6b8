"""DigiCert CertCentral (Services API v2): :class:`DigiCert`.

Every request carries the API key in the ``X-DC-DEVKEY`` header. An order is submitted with
``POST /order/certificate/{product_type}``, watched with ``GET /order/certificate/{order_id}``
and, once issued, downloaded with ``GET /certificate/{certificate_id}/download/format/pem_all``
(leaf first, then the chain). An order DigiCert issues at once comes back from the submit
(201) with ``certificate_id`` and ``certificate_chain`` (``[{subject_common_name, pem}]``,
CRLF line ends) and no ``status``: that answer is the certificate, with no further request.
Revocation uses the certificate id, not the serial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import httpx

from .._certs import csr_public_key
from .._models import (
    CertificateRequest,
    OrderStatus,
    RevocationReason,
)
from .._outcomes import Done, Failed, Pending
from .._settings import DigiCertSettings
from .._wire import DIGICERT, path
from ._base import Connector, JsonAnswer, decimal_id, path_segment, positive_int

__all__ = ["DigiCert"]

#: Order statuses that mean "not yet". "approved" is one only while its certificate has no
#: serial number (see :meth:`DigiCert._answer_status`).
PENDING_STATUSES = frozenset(
    {"pending", "processing", "needs_approval", "waiting_pickup", "reissue_pending", "approved"}
)
#: An order status that may already carry the issued certificate.
APPROVED = "approved"
#: Order statuses that are a final "no".
FAILED_STATUSES = frozenset({"rejected", "denied", "canceled", "revoked", "expired"})


@final
class DigiCert(Connector[DigiCertSettings]):
    """DigiCert CertCentral.

    Order ids and certificate ids are DigiCert's integers, as decimal strings.
    """

    ca = "digicert"
    pending_words = PENDING_STATUSES
    failed_words = FAILED_STATUSES
    issued_word = DIGICERT.ISSUED
    missing_route_words = (
        *Connector.missing_route_words,
        "not_found|route",
    )

    def check_order_id(self, order_id: str) -> str:
        """``order_id`` if it is a positive decimal integer, else :class:`ConfigError`."""
        return decimal_id(order_id, what="DigiCert order id")

    def _answer_status(
        self, answer: Mapping[str, object], response: httpx.Response, order_id: str
    ) -> Done[OrderStatus] | Pending | Failed | None:
        """An ``approved`` order whose certificate has a serial number is issued (None).

        Clients record such orders (riboseinc/digicert's order fixture: ``approved`` with
        the certificate's serial and validity; Keyfactor's CertCentral plugin downloads the
        certificate of an ``approved`` order); without a serial there is nothing yet.
        """
        status = answer.get("status")
        certificate = answer.get("certificate")
        if (
            isinstance(status, str)
            and self._status_word(status) == APPROVED
            and isinstance(certificate, dict)
            and isinstance(certificate.get(DIGICERT.SERIAL_NUMBER), str)
            and certificate[DIGICERT.SERIAL_NUMBER].strip()
        ):
            return None
        return super()._answer_status(answer, response, order_id)

    def _request(
        self, method: str, *segments: str, body: Mapping[str, object] | None = None
    ) -> httpx.Request:
        headers = {
            DIGICERT.API_KEY_HEADER: self.settings.api_key.get_secret_value(),
            "Accept": "application/json",
        }
        return self.http.build_request(method, self.url(*segments), headers=headers, json=body)

    async def issue(self, request: CertificateRequest) -> OrderStatus:
        """Order a certificate for one year: ``ISSUED`` if DigiCert issued it at once.

        A rejected order comes back ``FAILED``; anything else ``PENDING``. Never retried:
        an answer that leaves the order's fate open raises :class:`SubmissionUncertain`.
        """
        product = path_segment(self.settings.product_type, what="DigiCert product type")
        certificate: dict[str, object] = {
            "common_name": request.common_name,
            "csr": request.csr_pem,
        }
        if request.sans:
            certificate["dns_names"] = list(request.sans)
        body = {
            "certificate": certificate,
            "organization": {"id": self.settings.org_id},
            "order_validity": {"years": 1},
        }
        response = await self._submit(
            self._request("POST", path(DIGICERT.SUBMIT, product_type=product), body=body),
            certificate_request=request,
        )
        order_id, answer = self._accepted_order(request, response, id_field="id")
        status = answer.get("status")
        word = self._status_word(status) if isinstance(status, str) else None
        if word in FAILED_STATUSES:
            return self._rejected(order_id, f"order {order_id} is {status}")
        certificate_id = positive_int(answer.get("certificate_id"))
        chain = answer.get("certificate_chain")
        if chain is not None:
            return self._submitted(
                order_id, self._issued_at_once(request, response, order_id, certificate_id, chain)
            )
        if word == DIGICERT.ISSUED and certificate_id is not None:
            return self._submitted(order_id, await self._download(order_id, certificate_id))
        if isinstance(status, str) and status:
            # Through the word table: an unknown word is redacted and cut like any other.
            looked = self._status_outcome(status, order_id=order_id)
            if looked is None:  # "issued", without a certificate id to download yet
                looked = Pending(detail=f"order {order_id} is {status}")
            return self._submitted(order_id, looked if isinstance(looked, Pending) else None)
        return self._submitted(order_id)

    def _issued_at_once(
        self,
        request: CertificateRequest,
        response: httpx.Response,
        order_id: str,
        certificate_id: int | None,
        chain: object,
    ) -> Done[OrderStatus] | Failed:
        """The certificate in a submit answer's ``certificate_chain``, matched to the CSR's key."""
        pems = (
            [item.get("pem") for item in chain if isinstance(item, dict)]
            if isinstance(chain, list)
            else []
        )
        if certificate_id is None:
            problem = "the order came back issued without a certificate_id"
            return Failed(self._parse_error(problem, response, order_id))
        if not pems or not all(isinstance(pem, str) for pem in pems):
            problem = "certificate_chain is not a list of {pem}"
            return Failed(self._parse_error(problem, response, order_id))
        return self._issued_from_pem(
            "".join(str(pem) for pem in pems),
            order_id=order_id,
            ca_certificate_id=str(certificate_id),
            public_key=csr_public_key(request.csr_pem),
        )

    async def poll_once(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        """Look at the order once and, when it is issued, download the certificate."""
        order_id = self.check_order_id(order_id)
        request = self._request("GET", path(DIGICERT.STATUS, order_id=order_id))
        answer = await self._look(request, order_id=order_id)
        if not isinstance(answer, JsonAnswer):
            return answer
        certificate = answer.body.get("certificate")
        certificate_id = (
            positive_int(certificate.get("id")) if isinstance(certificate, dict) else None
        )
        if certificate_id is None:
            problem = "the order is issued but has no certificate id"
            return Failed(self._parse_error(problem, answer.response, order_id))
        return await self._download(order_id, certificate_id)

    async def _download(
        self, order_id: str, certificate_id: int
    ) -> Done[OrderStatus] | Failed | Pending:
        request = self._request("GET", path(DIGICERT.DOWNLOAD, certificate_id=str(certificate_id)))
        sent = await self._send(request, order_id=order_id)
        if not isinstance(sent, httpx.Response):
            return sent
        return self._issued_from_pem(
            sent.content, order_id=order_id, ca_certificate_id=str(certificate_id)
        )

    async def _send_revocation(
        self, certificate_id: str, reason: RevocationReason, comment: str | None
    ) -> httpx.Response | Pending | Failed:
        """``PUT`` a revocation of DigiCert's certificate id (not the serial).

        ``comment`` goes to the approver: DigiCert may hold the request for an
        administrator's approval.
        """
        certificate_id = decimal_id(certificate_id, what="DigiCert certificate id")
        name = self._wire_reason(reason, DIGICERT.REVOCATION_REASONS)
        body = {
            "revocation_reason": name,
            "comments": comment if comment is not None else f"revoked through certpoll: {name}",
        }
        return await self._send(
            self._request("PUT", path(DIGICERT.REVOKE, certificate_id=certificate_id), body=body)
        )
