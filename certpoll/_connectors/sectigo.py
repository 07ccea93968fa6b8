"""Sectigo Certificate Manager (SCM REST API, SSL v1): :class:`Sectigo`.

Every request carries the ``customerUri``, ``login`` and ``password`` headers. An order is
enrolled with ``POST /ssl/v1/enroll`` (answer: ``sslId``), watched with
``GET /ssl/v1/{sslId}`` and, once issued, collected with
``GET /ssl/v1/collect/{sslId}?format=pemia``: the one format SCM documents with an order,
"Certificate (w/ issuer after)". Whatever order the bundle comes in (SCM's ``x509`` bundle is
root first), the leaf is found by structure. SCM reports ``Issued`` before the certificate
can be collected: a collect answered HTTP 400 with one of the "try later" codes in
:data:`COLLECT_NOT_READY_CODES` is pending, any other 400 permanent.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import final

import httpx

from .._errors import ConfigError
from .._models import (
    CertificateRequest,
    OrderStatus,
    RevocationReason,
)
from .._outcomes import Done, Failed, Pending
from .._settings import SectigoSettings
from .._triage import Triage
from .._wire import SECTIGO, path
from ._base import Connector, JsonAnswer, decimal_id

__all__ = ["COLLECT_NOT_READY_CODES", "Sectigo"]

#: Statuses (lower case: compared without case) that mean "not yet". "not enrolled": the
#: certificate awaits its applicant's enrollment (an invitation not yet used); "awaiting
#: approval": deprecated in SCM's reference, which reads it as "requested".
PENDING_STATUSES = frozenset(
    {
        "requested",
        "approved",
        "saapproved",
        "applied",
        "init",
        "pending",
        "not enrolled",
        "awaiting approval",
    }
)
#: Statuses (lower case) that are a final "no".
FAILED_STATUSES = frozenset({"declined", "rejected", "revoked", "expired", "invalid", "replaced"})
#: Statuses (lower case) SCM gives an issued certificate: ``Issued``; issued with a key pair
#: SCM made, not yet downloaded; the same once downloaded; and "External", which SCM's
#: reference deprecates as falling back to "Issued". All can be collected.
ISSUED_STATUSES = frozenset({"issued", "enrolled - pending download", "downloaded", "external"})
#: The word every issued status reads as.
_ISSUED = "issued"
#: The collect format whose order SCM documents: the certificate, then its issuers.
COLLECT_FORMAT = "pemia"
#: SCM error codes of a collect that mean "try later": -1400 being processed, -109 not
#: available now, -183 not collectable, -195 CA not available, -140 CSR decoding
#: unavailable, -130 SSL state is not ISSUED.
COLLECT_NOT_READY_CODES = frozenset({-1400, -109, -183, -195, -140, -130})

_COLLECT_PATH = "/" + path(SECTIGO.COLLECT, ssl_id="")
_CODE = re.compile(r"-?[0-9]{1,9}")
_MAX_REASON_CHARS = 512


def _collect_not_ready(response: httpx.Response) -> str | None:
    """The words of a collect's "try later" HTTP 400, or None for any other answer."""
    if response.status_code != 400 or _COLLECT_PATH not in response.request.url.path:
        return None
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if isinstance(code, str) and _CODE.fullmatch(code):
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or code not in COLLECT_NOT_READY_CODES:
        return None
    description = body.get("description")
    words = description if isinstance(description, str) else "not ready"
    return f"issued, but not ready to collect yet (SCM code {code}: {words})"


@final
class Sectigo(Connector[SectigoSettings]):
    """Sectigo Certificate Manager.

    Order ids are SCM's ``sslId``: positive decimal integers, strictly (``"12abc"`` is a
    :class:`ConfigError`, not 12).
    """

    ca = "sectigo"
    order_noun = "enrollment"
    pending_words = PENDING_STATUSES
    failed_words = FAILED_STATUSES
    issued_word = _ISSUED

    @staticmethod
    def _status_word(status: str) -> str:
        """``status`` in lower case, and every word for an issued certificate as ``issued``.

        SCM writes ``Issued``; clients compare without case (Keyfactor's SCM plugin
        upper-cases the word first), so ``ISSUED`` or ``issued`` mean the same.
        """
        word = Connector._status_word(status)
        return _ISSUED if word in ISSUED_STATUSES else word

    def _make_triage(self) -> Triage:
        return dataclasses.replace(super()._make_triage(), not_ready=_collect_not_ready)

    def check_order_id(self, order_id: str) -> str:
        """``order_id`` if it is a positive decimal integer, else :class:`ConfigError`."""
        return decimal_id(order_id, what="Sectigo sslId")

    def _request(
        self,
        method: str,
        *segments: str,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        headers = {
            SECTIGO.CUSTOMER_URI_HEADER: self.settings.customer_uri,
            SECTIGO.LOGIN_HEADER: self.settings.login.get_secret_value(),
            SECTIGO.PASSWORD_HEADER: self.settings.password.get_secret_value(),
            "Accept": "application/json",
        }
        return self.http.build_request(
            method, self.url(*segments), headers=headers, json=body, params=params
        )

    async def issue(self, request: CertificateRequest) -> OrderStatus:
        """Enroll a certificate, then look at it once: ``ISSUED`` if SCM issued it at once.

        A rejected enrollment comes back ``FAILED``; anything else ``PENDING``. The enroll
        is never retried: an answer that leaves its fate open raises
        :class:`SubmissionUncertain`.
        """
        for name in request.sans:
            if "," in name or not name.strip():
                raise ConfigError(f"{name!r} is not a DNS name SCM can take in subjAltNames")
        body: dict[str, object] = {
            "orgId": self.settings.org_id,
            "csr": request.csr_pem,
            "certType": self.settings.cert_type,
            "term": self.settings.term,
            "comments": "requested through certpoll",
        }
        if request.sans:
            body["subjAltNames"] = ",".join(request.sans)
        if self.settings.external_requester:
            body["externalRequester"] = self.settings.external_requester
        response = await self._submit(
            self._request("POST", path(SECTIGO.ENROLL), body=body),
            certificate_request=request,
        )
        order_id, _ = self._accepted_order(request, response, id_field="sslId")
        return self._submitted(order_id, await self.poll_once(order_id))

    async def poll_once(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        """Look at the enrollment once and, when it is issued, collect the certificate."""
        order_id = self.check_order_id(order_id)
        request = self._request("GET", path(SECTIGO.STATUS, ssl_id=order_id))
        answer = await self._look(request, order_id=order_id)
        if not isinstance(answer, JsonAnswer):
            return answer
        return await self._collect(order_id)

    async def _collect(self, order_id: str) -> Done[OrderStatus] | Pending | Failed:
        request = self._request(
            "GET", path(SECTIGO.COLLECT, ssl_id=order_id), params={"format": COLLECT_FORMAT}
        )
        sent = await self._send(request, order_id=order_id)
        if not isinstance(sent, httpx.Response):
            return sent
        if not sent.content.strip():
            # A 200 without a body: the certificate is not there yet (Keyfactor's SCM plugin
            # treats an empty collect as "not yet" and picks up again later).
            return Pending(
                detail=f"enrollment {order_id} is issued, but not ready to collect yet "
                "(the collect answered with no certificate)"
            )
        return self._issued_from_pem(sent.text, order_id=order_id, ca_certificate_id=order_id)

    async def _send_revocation(
        self, certificate_id: str, reason: RevocationReason, comment: str | None
    ) -> httpx.Response | Pending | Failed:
        """``POST`` a revocation of an ``sslId`` (a :class:`Certificate`'s ``ca_certificate_id``).

        SCM takes the reason codes 0, 1, 3, 4 and 5. ``comment`` (1 to 512 characters;
        default: the reason) is SCM's required ``reason`` text.
        """
        ssl_id = decimal_id(certificate_id, what="Sectigo sslId")
        code = self._wire_reason(reason, SECTIGO.REVOCATION_REASONS)
        text = (
            comment if comment is not None else f"revoked through certpoll: {reason.name.lower()}"
        )
        if not text.strip() or len(text) > _MAX_REASON_CHARS:
            raise ConfigError(f"comment must be 1 to {_MAX_REASON_CHARS} characters")
        body = {"reasonCode": code, "reason": text}
        return await self._send(
            self._request("POST", path(SECTIGO.REVOKE, ssl_id=ssl_id), body=body)
        )
