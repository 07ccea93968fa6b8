"""A throw-away PKI: the simulated CA's root and intermediate, and the leaves it issues.

ECDSA P-256 everywhere because it is fast to generate and to sign with. Nothing here is
meant to protect anything.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BadCSR",
    "Authority",
    "TestPKI",
    "load_csr",
    "pem",
    "public_key_from_pem",
    "unusable_names",
]

_BACKDATE = timedelta(minutes=5)


class BadCSR(ValueError):
    """A certificate signing request that cannot be used."""


def pem(certificate: x509.Certificate) -> str:
    """``certificate`` in PEM."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_csr(text: str) -> x509.CertificateSigningRequest:
    """A CSR from PEM or from base64 DER (Entrust's form); :class:`BadCSR` if unusable."""
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            csr = x509.load_pem_x509_csr(stripped.encode("ascii"))
        else:
            csr = x509.load_der_x509_csr(base64.b64decode(stripped, validate=True))
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise BadCSR(f"the CSR cannot be parsed: {exc}") from exc
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and others here
        raise BadCSR(f"the CSR signature cannot be checked: {exc}") from exc
    if not valid:
        raise BadCSR("the CSR signature is not valid")
    return csr


def public_key_from_pem(text: str) -> CertificatePublicKeyTypes:
    """A SubjectPublicKeyInfo in PEM (GlobalSign's ``public_key``); :class:`BadCSR` if not."""
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise BadCSR(f"the public key cannot be parsed: {exc}") from exc
    if not isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise BadCSR(f"a {type(key).__name__} cannot go in a certificate")
    return key


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[str | None, tuple[str, ...]]:
    """The CSR's common name and DNS subject alternative names."""
    common = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(common[0].value) if common else None
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return common_name, ()
    return common_name, tuple(san.value.get_values_for_type(x509.DNSName))


def unusable_names(common_name: str, dns_names: Iterable[str]) -> str | None:
    """Why a leaf cannot carry these names, in a CA's words; None when it can.

    What :meth:`TestPKI.issue` will put in the leaf, checked when the order arrives, so that
    the simulator refuses it with a 400 as a CA does, instead of failing with a 500 later.
    The common name goes in the subject (1 to 64 characters) and, as every DNS name, in the
    subject alternative names (ASCII: an internationalised name as its A-label).
    """
    try:
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]).public_bytes()
    except (ValueError, UnicodeEncodeError):
        return "the common name must be 1 to 64 characters of UTF-8 text"
    for name in (common_name, *dns_names):
        if name and not name.isascii():
            shown = name.encode("ascii", "backslashreplace").decode()
            return f"{shown} is not an ASCII (A-label) DNS name"
    return None


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA certificate and its key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def root(cls, name: str, *, now: datetime) -> Authority:
        """A self-signed root valid for ten years."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = _ca_builder(subject, subject, key.public_key(), now, days=3650, path_length=1)
        return cls(builder.sign(key, hashes.SHA256()), key)

    def intermediate(self, name: str, *, now: datetime) -> Authority:
        """A CA signed by this one, valid for five years."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = _ca_builder(
            subject, self.certificate.subject, key.public_key(), now, days=1825, path_length=0
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
            critical=False,
        )
        return Authority(builder.sign(self.key, hashes.SHA256()), key)

    def sign(
        self,
        *,
        public_key: CertificatePublicKeyTypes,
        common_name: str,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        serial: int,
        not_before: datetime,
        not_after: datetime,
        client: bool = False,
    ) -> x509.Certificate:
        """An end-entity certificate for ``public_key`` (server auth, or client auth)."""
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        signing_key: CertificateIssuerPrivateKeyTypes = self.key
        return builder.sign(signing_key, hashes.SHA256())


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    *,
    days: int,
    path_length: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


class TestPKI:
    """The issuing hierarchy of one simulated CA: a root and an intermediate."""

    __test__ = False  # not a pytest test class, whatever its name

    root: Authority
    #: The issuer of every leaf, signed by the root.
    intermediate: Authority
    #: How long a leaf is valid.
    validity: timedelta
    #: The issuers of every leaf: the intermediate, then the root.
    chain: tuple[x509.Certificate, x509.Certificate]
    #: The intermediate then the root, in PEM: what follows a leaf in a full bundle.
    chain_pem: str
    root_pem: str

    def __init__(self, *, name: str = "certpoll simulated CA", validity_days: int = 90) -> None:
        now = datetime.now(UTC)
        self.root = Authority.root(f"{name} root", now=now)
        self.intermediate = self.root.intermediate(f"{name} intermediate", now=now)
        self.validity = timedelta(days=validity_days)
        self.chain = (self.intermediate.certificate, self.root.certificate)
        self.chain_pem = pem(self.intermediate.certificate) + pem(self.root.certificate)
        self.root_pem = pem(self.root.certificate)

    def issue(
        self,
        *,
        public_key: CertificatePublicKeyTypes,
        common_name: str,
        dns_names: tuple[str, ...],
        serial: int,
    ) -> x509.Certificate:
        """A leaf for ``public_key`` and the names, valid from now for the validity period."""
        now = datetime.now(UTC).replace(microsecond=0)
        return self.intermediate.sign(
            public_key=public_key,
            common_name=common_name,
            dns_names=dns_names,
            serial=serial,
            not_before=now - _BACKDATE,
            not_after=now + self.validity,
        )
