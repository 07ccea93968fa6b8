"""The data certpoll exchanges with its callers: requests, certificates, order states."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ._errors import ConfigError

__all__ = [
    "CAName",
    "Certificate",
    "CertificateRequest",
    "OrderState",
    "OrderStatus",
    "RevocationReason",
]

CAName = Literal["digicert", "sectigo", "entrust", "globalsign"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRequest:
    """What to order: a common name, a PEM CSR and optional DNS subject alternative names."""

    common_name: str
    csr_pem: str
    sans: Sequence[str] = ()

    def __post_init__(self) -> None:
        if isinstance(self.sans, str):
            raise ConfigError("sans must be a sequence of DNS names, not one string")
        object.__setattr__(self, "sans", tuple(self.sans))
        # Checked here, not when the body is encoded: there it would be a UnicodeEncodeError
        # from httpx, outside certpoll's exceptions, after the gate admitted the request.
        fields = [("common_name", self.common_name), ("csr_pem", self.csr_pem)]
        for name, value in [*fields, *(("sans", san) for san in self.sans)]:
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be text, not {type(value).__name__}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ConfigError(
                    f"{name} must be text UTF-8 can encode (it holds an unpaired surrogate)"
                ) from exc
        if not self.common_name.strip():
            raise ConfigError("common_name must not be empty")
        if "-----BEGIN CERTIFICATE REQUEST-----" not in self.csr_pem:
            raise ConfigError(
                "csr_pem must be a PEM certificate signing request "
                "(-----BEGIN CERTIFICATE REQUEST-----)"
            )


class OrderState(enum.StrEnum):
    """Where an order stands."""

    ISSUED = "issued"
    PENDING = "pending"
    FAILED = "failed"


class RevocationReason(enum.IntEnum):
    """The RFC 5280 revocation reasons, with their CRL reason codes."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    PRIVILEGE_WITHDRAWN = 9


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """An issued certificate.

    ``serial`` is the leaf's serial number in decimal digits, for every CA (GlobalSign's
    HVCA calls the certificate by its serial in hexadecimal: that is ``ca_certificate_id``);
    ``ca_certificate_id`` is the identifier the CA expects when revoking it (DigiCert
    certificate id, Sectigo sslId, Entrust serial, GlobalSign HVCA serial).
    """

    pem: str
    chain_pem: str
    serial: str
    not_before: datetime
    not_after: datetime
    ca_certificate_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatus:
    """The state of one order at ``updated_at``.

    ``ISSUED`` carries ``certificate``; ``FAILED`` carries the CA's words in ``message``;
    ``PENDING`` (still pending after PollMaxWait) carries the latest ``message``, the latest
    transient ``last_error`` and, when the CA asked for a wait past the deadline,
    ``retry_after`` in seconds.
    """

    ca: CAName
    order_id: str
    state: OrderState
    certificate: Certificate | None = None
    message: str | None = None
    last_error: Exception | None = None
    retry_after: float | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
