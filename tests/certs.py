"""Real X.509 material for tests: CSRs and issued chains, made with ``cryptography``.

Generic on purpose (any connector's tests can use it): EC P-256 keys keep it fast, and the
test CA (``certpoll.testing``'s PKI: a root and an intermediate) is made once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certpoll.testing import TestPKI

__all__ = ["default_ca", "make_chain", "make_csr", "make_order"]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(Encoding.PEM).decode("ascii")


def _san(common_name: str, sans: Sequence[str]) -> x509.SubjectAlternativeName:
    names = dict.fromkeys([common_name, *sans])
    return x509.SubjectAlternativeName([x509.DNSName(n) for n in names])


def make_csr(
    common_name: str = "www.example.com",
    sans: Sequence[str] = (),
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> str:
    """A PEM CSR for ``common_name`` with ``sans`` (and the common name) as DNS names."""
    key = ec.generate_private_key(ec.SECP256R1()) if key is None else key
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name))
        .add_extension(_san(common_name, sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(Encoding.PEM).decode("ascii")


@functools.cache
def default_ca() -> TestPKI:
    """The process-wide test CA: ``certpoll.testing``'s PKI, the suite's only one."""
    return TestPKI(name="certpoll test")


def make_chain(
    common_name: str = "www.example.com",
    sans: Sequence[str] = (),
    *,
    serial: int | None = None,
    not_before: datetime | None = None,
    days: int = 90,
    public_key: ec.EllipticCurvePublicKey | None = None,
) -> tuple[str, str, str]:
    """A leaf issued by the test CA: ``(leaf_pem, chain_pem, decimal serial)``.

    ``chain_pem`` is the intermediate then the root; ``leaf_pem + chain_pem`` is what a CA's
    "full chain" PEM download looks like.
    """
    ca = default_ca()
    start = (datetime.now(UTC) if not_before is None else not_before).replace(microsecond=0)
    number = x509.random_serial_number() if serial is None else serial
    if public_key is None:
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    leaf = ca.intermediate.sign(
        public_key=public_key,
        common_name=common_name,
        dns_names=tuple(dict.fromkeys([common_name, *sans])),
        serial=number,
        not_before=start,
        not_after=start + timedelta(days=days),
    )
    return _pem(leaf), ca.chain_pem, str(number)


def make_order(
    common_name: str = "www.example.com", sans: Sequence[str] = (), *, serial: int | None = None
) -> tuple[str, str, str, str]:
    """A CSR and the leaf the test CA issues for its key: ``(csr, leaf, chain, serial)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, chain, number = make_chain(common_name, sans, serial=serial, public_key=key.public_key())
    return make_csr(common_name, sans, key=key), leaf, chain, number
