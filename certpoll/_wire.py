"""The wire contract: every path, header, field and word the connectors and the simulator share.

The connectors (``certpoll._connectors``) build their requests from these names and the
simulated CA (``certpoll.testing``) answers them, so the two cannot drift apart. When a real
CA's published API description and this file disagree, the CA wins and this file is fixed.
Paths are relative to each CA's base URL (see :func:`path`); the simulator mounts each CA
under its :data:`MOUNTS` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._models import CAName, RevocationReason

__all__ = [
    "DIGICERT",
    "ENTRUST",
    "GLOBALSIGN",
    "MOUNTS",
    "RFC5280_REASON_NAMES",
    "SECTIGO",
    "path",
]


def path(template: str, **segments: str) -> str:
    """``template`` filled with already-escaped ``segments``, without its leading slash.

    >>> path(DIGICERT.STATUS, order_id="42")
    'order/certificate/42'
    """
    return template.format(**segments).lstrip("/")


#: Where each CA lives in the simulator; the base URL is ``origin + MOUNTS[ca]``.
MOUNTS: Final[dict[CAName, str]] = {
    "digicert": "/digicert/services/v2",
    "sectigo": "/sectigo/api",
    "entrust": "/entrust/cagw",
    "globalsign": "/globalsign/v2",
}


#: RFC 5280 reasons by their ASN.1 names, as Entrust and GlobalSign write them ("caCompromise").
RFC5280_REASON_NAMES: Final[Mapping[RevocationReason, str]] = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "keyCompromise",
    RevocationReason.CA_COMPROMISE: "caCompromise",
    RevocationReason.AFFILIATION_CHANGED: "affiliationChanged",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    RevocationReason.CERTIFICATE_HOLD: "certificateHold",
    RevocationReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
}


class DIGICERT:
    """DigiCert CertCentral Services API v2."""

    API_KEY_HEADER: Final = "X-DC-DEVKEY"
    SUBMIT: Final = "/order/certificate/{product_type}"
    STATUS: Final = "/order/certificate/{order_id}"
    DOWNLOAD: Final = "/certificate/{certificate_id}/download/format/pem_all"
    REVOKE: Final = "/certificate/{certificate_id}/revoke"
    # The submit body: {"certificate": {common_name, csr, dns_names}, "organization": {"id"}}
    CERTIFICATE: Final = "certificate"
    COMMON_NAME: Final = "common_name"
    CSR: Final = "csr"
    DNS_NAMES: Final = "dns_names"
    ORGANIZATION: Final = "organization"
    # Order answers (201): {"id", "requests": [{"id", "status"}]}, and when issued at once
    # also "certificate_id" and "certificate_chain": [{"subject_common_name", "pem"}] (CRLF),
    # with no "status". Status: {"id", "status", "certificate": {...}}.
    ID: Final = "id"
    REQUESTS: Final = "requests"
    CERTIFICATE_CHAIN: Final = "certificate_chain"
    STATUS_FIELD: Final = "status"
    CERTIFICATE_ID: Final = "certificate_id"
    SERIAL_NUMBER: Final = "serial_number"
    # Order statuses the simulator sends.
    NEEDS_APPROVAL: Final = "needs_approval"
    PENDING: Final = "pending"
    ISSUED: Final = "issued"
    REJECTED: Final = "rejected"
    REVOKED: Final = "revoked"
    # Errors: {"errors": [{"code", "message"}]}
    RATE_LIMIT_CODE: Final = "request_limit_exceeded"
    RATE_LIMIT_MESSAGE: Final = "Service unavailable, please limit request volume"
    #: The documented limits, per API key: (requests, per seconds), all enforced.
    RATE_LIMITS: Final[tuple[tuple[int, float], ...]] = ((100, 5.0), (1000, 180.0))
    #: RFC 5280 reasons as ``revocation_reason`` names: snake case ("key_compromise").
    #: DigiCert takes the reasons a subscriber may give under the CA/Browser Forum Baseline
    #: Requirements; the others (CA compromise, certificate hold, privilege withdrawn) are
    #: the CA's own to give.
    REVOCATION_REASONS: Final[Mapping[RevocationReason, str]] = {
        reason: reason.name.lower()
        for reason in RevocationReason
        if reason
        not in (
            RevocationReason.CA_COMPROMISE,
            RevocationReason.CERTIFICATE_HOLD,
            RevocationReason.PRIVILEGE_WITHDRAWN,
        )
    }


class SECTIGO:
    """Sectigo Certificate Manager REST API (header authentication)."""

    CUSTOMER_URI_HEADER: Final = "customerUri"
    LOGIN_HEADER: Final = "login"
    PASSWORD_HEADER: Final = "password"  # noqa: S105 - a header name, not a password
    ENROLL: Final = "/ssl/v1/enroll"
    STATUS: Final = "/ssl/v1/{ssl_id}"
    COLLECT: Final = "/ssl/v1/collect/{ssl_id}"  # ?format=pemia (also /collect/{id}/{format})
    #: The PEM collect formats; PEM comes with CRLF line ends.
    FORMATS_PEM: Final = frozenset({"x509", "pem", "pemia", "x509CO", "pemco", "x509IO", "x509IOR"})
    REVOKE: Final = "/ssl/v1/revoke/{ssl_id}"
    # The enroll body.
    ORG_ID: Final = "orgId"
    CSR: Final = "csr"
    CERT_TYPE: Final = "certType"
    TERM: Final = "term"
    SUBJ_ALT_NAMES: Final = "subjAltNames"  # comma-separated
    # Answers: enroll {"sslId", "renewId"}; status {"sslId", "status", "commonName", ...}
    SSL_ID: Final = "sslId"
    RENEW_ID: Final = "renewId"
    STATUS_FIELD: Final = "status"
    COMMON_NAME: Final = "commonName"
    SERIAL_NUMBER: Final = "serialNumber"
    # Revoke body.
    REASON_CODE: Final = "reasonCode"
    REASON: Final = "reason"
    #: The RFC 5280 reasons SCM takes, as their codes.
    REVOCATION_REASONS: Final[Mapping[RevocationReason, int]] = {
        reason: int(reason) for reason in RevocationReason if int(reason) in {0, 1, 3, 4, 5}
    }
    REASON_CODES: Final = frozenset(REVOCATION_REASONS.values())
    # Statuses the simulator sends.
    REQUESTED: Final = "Requested"
    APPLIED: Final = "Applied"
    ISSUED: Final = "Issued"
    REJECTED: Final = "Rejected"
    REVOKED: Final = "Revoked"
    # Error codes: {"code", "description"}.
    UNKNOWN_USER: Final = -16  # HTTP 401
    BEING_PROCESSED: Final = -1400  # collect before issuance: not ready
    NOT_COLLECTABLE: Final = -183  # collect just after issuance: not ready
    NOT_ISSUED: Final = -130  # collect of a rejected certificate
    REVOKED_CANNOT_DOWNLOAD: Final = -110
    ONLY_ISSUED_REVOKED: Final = -102
    INVALID_TERM: Final = -36
    INVALID_CSR: Final = -10
    INVALID_REQUEST: Final = -3
    NOT_FOUND: Final = -21  # HTTP 404
    #: Terms (days) the simulated account accepts.
    TERMS: Final = frozenset({365, 730})


class ENTRUST:
    """Entrust CA Gateway v1 (mTLS)."""

    #: Every path is under one CA of the gateway.
    CA_ROOT: Final = "/v1/certificate-authorities/{ca_id}"
    ENROLL: Final = CA_ROOT + "/enrollments"
    #: Not in CAGW's published description; answered for enrollments held without a serial.
    STATUS: Final = ENROLL + "/{tracking_id}"
    #: The published lookup: a certificate by its serial (hex).
    CERTIFICATE: Final = CA_ROOT + "/certificates/{serial}"
    ACTIONS: Final = CERTIFICATE + "/actions"
    # The enroll body: {"profileId", "csr" (PEM or base64 DER), "requiredFormat": {"format"},
    # "subjectAltNames": [...]}
    PROFILE_ID: Final = "profileId"
    CSR: Final = "csr"
    REQUIRED_FORMAT: Final = "requiredFormat"
    #: requiredFormat.format values answered: body as base64 DER, or as PEM.
    FORMATS: Final = frozenset({"X509", "PEM"})
    SUBJECT_ALT_NAMES: Final = "subjectAltNames"  # [{"type": "dNSName", "value": ...}]
    # Answers: {"type": "EnrollmentResponse", "enrollment": {"id", "serialNumber",
    # "subjectName", "status", "body", "properties", "chain": [{"certificateData"}]}};
    # the lookup: {"type": "CertificateResponse", "certificate": {"status", "serialNumber",
    # "certificateData", ...}, "chain": [...]}.
    ENROLLMENT: Final = "enrollment"
    ID: Final = "id"
    STATUS_FIELD: Final = "status"
    BODY: Final = "body"
    CHAIN: Final = "chain"
    CERTIFICATE_FIELD: Final = "certificate"
    CERTIFICATE_DATA: Final = "certificateData"
    SERIAL_NUMBER: Final = "serialNumber"
    # Revoke: {"action": {"type": "RevokeAction", "reason": ...}}
    ACTION: Final = "action"
    REVOKE_ACTION: Final = "RevokeAction"
    #: RFC 5280 reasons by the names a ``RevokeAction`` takes: all of them.
    REVOCATION_REASONS: Final[Mapping[RevocationReason, str]] = RFC5280_REASON_NAMES
    #: The reason names answered, compared without case.
    REASONS: Final = frozenset(name.lower() for name in REVOCATION_REASONS.values())
    # Enrollment statuses the simulator sends.
    AWAITING_APPROVAL: Final = "AWAITING_APPROVAL"
    PENDING: Final = "PENDING"
    ISSUED: Final = "ISSUED"
    ACCEPTED: Final = "ACCEPTED"
    REJECTED: Final = "REJECTED"
    REVOKED: Final = "REVOKED"
    # Certificate statuses of the lookup.
    NORMAL: Final = "normal"
    CERTIFICATE_REVOKED: Final = "revoked"
    # Errors: {"type": "ErrorResponse", "error": {"code", "message"}}.
    ERROR_TYPE: Final = "ErrorResponse"


class GLOBALSIGN:
    """GlobalSign Atlas HVCA v2 (mTLS and a bearer token)."""

    LOGIN: Final = "/login"
    SUBMIT: Final = "/certificates"
    CERTIFICATE: Final = "/certificates/{serial}"
    TRUSTCHAIN: Final = "/trustchain"
    API_KEY: Final = "api_key"
    API_SECRET: Final = "api_secret"  # noqa: S105 - a field name
    ACCESS_TOKEN: Final = "access_token"  # noqa: S105 - a field name
    #: How long a token lives, in seconds.
    TOKEN_LIFETIME: Final = 600.0
    # The submit body: {"csr" or "public_key", "subject_dn": {"common_name"}, "san": {...}}
    CSR: Final = "csr"
    PUBLIC_KEY: Final = "public_key"
    SUBJECT_DN: Final = "subject_dn"
    COMMON_NAME: Final = "common_name"
    SAN: Final = "san"
    DNS_NAMES: Final = "dns_names"
    # Answers: 201 + Location; GET 202 {"description"} or 200 below.
    STATUS_FIELD: Final = "status"
    CERTIFICATE_FIELD: Final = "certificate"
    CHAIN: Final = "chain"
    SERIAL_NUMBER: Final = "serial_number"
    UPDATED_AT: Final = "updated_at"
    DESCRIPTION: Final = "description"
    ISSUED: Final = "ISSUED"
    REVOKED: Final = "REVOKED"
    #: A lookup refused for good: HTTP 422, problem+json with this description.
    VALIDATION_FAILED: Final = 422
    VALIDATION_ERROR: Final = "CA validation error"
    #: RFC 5280 reasons by the names ``revocation_reason`` takes. GlobalSign's own client
    #: offers these six; CA compromise and certificate hold are the CA's to give.
    REVOCATION_REASONS: Final[Mapping[RevocationReason, str]] = {
        reason: RFC5280_REASON_NAMES[reason]
        for reason in RevocationReason
        if reason not in (RevocationReason.CA_COMPROMISE, RevocationReason.CERTIFICATE_HOLD)
    }
