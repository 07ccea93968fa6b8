"""Real X.509 material for tests: CSRs and issued chains, made with ``cryptography``.

Generic on purpose (any connector's tests can use it): EC P-256 keys keep it fast, and the
test CA (a root and an intermediate) is made once per process.
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

__all__ = ["TestCA", "default_ca", "make_chain", "make_csr", "make_order"]


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


class TestCA:
    """A root and an intermediate CA that sign leaf certificates."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca_cert(
            "certpoll test root", self.root_key, self.root_key, _name("certpoll test root"), now
        )
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._ca_cert(
            "certpoll test intermediate",
            self.intermediate_key,
            self.root_key,
            self.root.subject,
            now,
        )

    @staticmethod
    def _ca_cert(
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        now: datetime,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    @property
    def chain_pem(self) -> str:
        """Intermediate then root, in PEM."""
        return _pem(self.intermediate) + _pem(self.root)

    def issue(
        self,
        common_name: str = "www.example.com",
        sans: Sequence[str] = (),
        *,
        serial: int | None = None,
        not_before: datetime | None = None,
        days: int = 90,
        public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> tuple[str, str, str]:
        """A leaf for ``common_name`` (and ``public_key``, default a new one).

        Returns ``(leaf_pem, chain_pem, decimal serial)``.
        """
        start = (datetime.now(UTC) if not_before is None else not_before).replace(microsecond=0)
        number = x509.random_serial_number() if serial is None else serial
        if public_key is None:
            public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(number)
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(_san(common_name, sans), critical=False)
            .sign(self.intermediate_key, hashes.SHA256())
        )
        return _pem(leaf), self.chain_pem, str(number)


@functools.cache
def default_ca() -> TestCA:
    """The process-wide test CA."""
    return TestCA()


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
    return default_ca().issue(
        common_name, sans, serial=serial, not_before=not_before, days=days, public_key=public_key
    )


def make_order(
    common_name: str = "www.example.com", sans: Sequence[str] = (), *, serial: int | None = None
) -> tuple[str, str, str, str]:
    """A CSR and the leaf the test CA issues for its key: ``(csr, leaf, chain, serial)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, chain, number = make_chain(common_name, sans, serial=serial, public_key=key.public_key())
    return make_csr(common_name, sans, key=key), leaf, chain, number
