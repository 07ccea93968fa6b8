"""Reading certificates out of what the CAs send, and finding the issued one by structure.

CAs send a certificate with its chain in many orders (DigiCert leaf first, Sectigo's
``x509`` bundle root first) and encodings (PEM with LF or CRLF, base64 DER). The order is
never trusted: the leaf is the one certificate that issues none of the others (or, where
certpoll knows it, the one carrying the submitted public key), and the chain is rebuilt from
it towards the root, each link checked by signature. A bundle without exactly one such
leaf is a :class:`ResponseParseError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._errors import ResponseParseError
from ._models import Certificate

__all__ = [
    "MAX_CERTIFICATES",
    "certificate_from_pem",
    "csr_public_key",
    "issued_certificate",
    "read_certificates",
]

_BEGIN = "-----BEGIN CERTIFICATE-----"
#: No CA sends more than a handful; finding the leaf costs a signature check per pair.
MAX_CERTIFICATES = 16


def read_certificates(
    text: str, *, what: str, ca: str, order_id: str | None
) -> list[x509.Certificate]:
    """The certificates in ``text``: PEM blocks (LF or CRLF), or one base64 DER certificate.

    Text around and between PEM blocks is ignored; empty text is no certificate. Anything
    else is a :class:`ResponseParseError` naming ``what`` (e.g. "certificate", "chain").
    """
    if _BEGIN in text:
        try:
            return x509.load_pem_x509_certificates(text.encode())
        except (ValueError, UnicodeEncodeError) as exc:
            raise ResponseParseError(
                f"{ca}: the {what} PEM cannot be parsed: {exc}", ca=ca, order_id=order_id
            ) from exc
    compact = "".join(text.split())
    if not compact:
        return []
    try:
        der = base64.b64decode(compact, validate=True)
        return [x509.load_der_x509_certificate(der)]
    except (binascii.Error, ValueError) as exc:
        raise ResponseParseError(
            f"{ca}: the {what} is neither PEM nor base64 DER", ca=ca, order_id=order_id
        ) from exc


def csr_public_key(csr_pem: str) -> bytes | None:
    """The SubjectPublicKeyInfo (DER) of a PEM CSR, or None if it cannot be read."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        return _spki(csr.public_key())
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        return None


def issued_certificate(
    certificates: Sequence[x509.Certificate],
    *,
    ca: str,
    order_id: str | None,
    ca_certificate_id: str,
    public_key: bytes | None = None,
) -> Certificate:
    """The issued certificate among ``certificates``, in any order, with its chain.

    The leaf is the certificate whose public key is ``public_key`` (SubjectPublicKeyInfo
    DER) when given, else the one certificate that issues none of the others and is not a
    CA certificate (certpoll orders end-entity certificates). The chain
    runs from the leaf's issuer to the root, each certificate verified as the issuer of the
    one before; certificates off that path are dropped. No certificate, no leaf, or more
    than one candidate is a :class:`ResponseParseError`: certpoll never guesses.
    The serial is the leaf's, in decimal, whatever the CA calls it.
    """
    # A certificate sent twice (in the body and again in the chain) counts once.
    unique = list({c.public_bytes(Encoding.DER): c for c in certificates}.values())
    if not unique:
        raise ResponseParseError(
            f"{ca}: no certificate found in the answer", ca=ca, order_id=order_id
        )
    if len(unique) > MAX_CERTIFICATES:
        raise ResponseParseError(
            f"{ca}: the answer holds {len(unique)} certificates, more than the "
            f"{MAX_CERTIFICATES} certpoll reads",
            ca=ca,
            order_id=order_id,
        )
    leaf = _leaf(unique, public_key=public_key, ca=ca, order_id=order_id)
    chain = _chain_above(leaf, [c for c in unique if c is not leaf])
    return Certificate(
        pem=_pem(leaf),
        chain_pem="".join(_pem(c) for c in chain),
        serial=str(leaf.serial_number),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        ca_certificate_id=ca_certificate_id,
    )


def certificate_from_pem(
    bundle: str,
    *,
    ca: str,
    order_id: str | None,
    ca_certificate_id: str,
    chain: str = "",
    public_key: bytes | None = None,
) -> Certificate:
    """:func:`issued_certificate` of the certificates in ``bundle`` and ``chain`` (text)."""
    found = read_certificates(bundle, what="certificate", ca=ca, order_id=order_id)
    extra = read_certificates(chain, what="chain", ca=ca, order_id=order_id)
    return issued_certificate(
        [*found, *extra],
        ca=ca,
        order_id=order_id,
        ca_certificate_id=ca_certificate_id,
        public_key=public_key,
    )


def _leaf(
    certificates: list[x509.Certificate],
    *,
    public_key: bytes | None,
    ca: str,
    order_id: str | None,
) -> x509.Certificate:
    if public_key is not None:
        matching = [c for c in certificates if _spki(c.public_key()) == public_key]
        if len(matching) == 1:
            return matching[0]
        raise ResponseParseError(
            f"{ca}: {len(matching)} certificates in the answer carry the submitted public key; "
            "expected exactly one",
            ca=ca,
            order_id=order_id,
        )
    candidates = [
        c
        for c in certificates
        if not _is_ca(c) and not any(_issued_by(other, c) for other in certificates)
    ]
    if len(candidates) == 1:
        return candidates[0]
    raise ResponseParseError(
        f"{ca}: no single issued certificate in the answer: {len(candidates)} of its "
        f"{len(certificates)} certificates issue none of the others",
        ca=ca,
        order_id=order_id,
    )


def _is_ca(certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` is a CA's own (basicConstraints cA), never an order's leaf."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def _chain_above(leaf: x509.Certificate, others: list[x509.Certificate]) -> list[x509.Certificate]:
    chain: list[x509.Certificate] = []
    current = leaf
    remaining = list(others)
    while True:
        parent = next((c for c in remaining if _issued_by(current, c)), None)
        if parent is None:
            return chain
        chain.append(parent)
        remaining.remove(parent)
        current = parent


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``child`` (names match and the signature verifies)."""
    if child is issuer:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(Encoding.PEM).decode("ascii")
