"""Reading certificates out of what the CAs send: PEM bundles, parsed with ``cryptography``.

``cryptography`` is imported when the first certificate is read, not with ``certpoll``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ResponseParseError
from ._models import Certificate

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["certificate_from_pem"]

_BEGIN = "-----BEGIN CERTIFICATE-----"


def certificate_from_pem(
    bundle: str,
    *,
    ca: str,
    order_id: str | None,
    ca_certificate_id: str,
    chain: str = "",
) -> Certificate:
    """Build a :class:`Certificate` from a PEM bundle whose first certificate is the leaf.

    Text around and between the PEM blocks is ignored; each certificate is re-encoded in
    canonical PEM (64 columns, LF, trailing newline). ``chain`` adds certificates that came
    separately. The serial is the leaf's, in decimal, whatever the CA calls it.
    Anything unreadable raises :class:`ResponseParseError` with the cause chained.
    """
    certificates = _load(bundle, what="certificate", ca=ca, order_id=order_id)
    if not certificates:
        raise ResponseParseError(
            f"{ca}: no certificate found in the PEM answer", ca=ca, order_id=order_id
        )
    extra = _load(chain, what="chain", ca=ca, order_id=order_id) if chain.strip() else []
    leaf, *rest = certificates
    try:
        not_before = leaf.not_valid_before_utc
        not_after = leaf.not_valid_after_utc
        leaf_serial = str(leaf.serial_number)
    except ValueError as exc:  # pragma: no cover - cryptography validates on load
        raise ResponseParseError(
            f"{ca}: the certificate cannot be read: {exc}", ca=ca, order_id=order_id
        ) from exc
    return Certificate(
        pem=_pem(leaf),
        chain_pem="".join(_pem(c) for c in [*rest, *extra]),
        serial=leaf_serial,
        not_before=not_before,
        not_after=not_after,
        ca_certificate_id=ca_certificate_id,
    )


def _load(text: str, *, what: str, ca: str, order_id: str | None) -> list[x509.Certificate]:
    from cryptography import x509

    if _BEGIN not in text:
        if text.strip():
            raise ResponseParseError(
                f"{ca}: the {what} is not PEM (no {_BEGIN} line)", ca=ca, order_id=order_id
            )
        return []
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except (ValueError, UnicodeEncodeError) as exc:
        raise ResponseParseError(
            f"{ca}: the {what} PEM cannot be parsed: {exc}", ca=ca, order_id=order_id
        ) from exc


def _pem(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.PEM).decode("ascii")
