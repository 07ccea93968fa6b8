"""The simulator's orders: the accounts, each order's state, and the scripts they follow.

Per-order state is a small slotted record; no task runs per order. Everything an order
does is computed from the simulator's clock when a request looks at it, and its
certificate is signed the first time someone sees it issued.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from .._errors import ConfigError
from .._models import CAName
from ._pki import TestPKI
from ._scenario import OrderScript, Profile

if TYPE_CHECKING:
    from .._settings import CASettings

__all__ = ["Clock", "Credentials", "Order", "OrderBook", "OrderIds", "OrderInfo", "OrderPhase"]

OrderPhase = Literal["approval", "processing", "issued", "rejected", "revoked"]

#: The simulator's clock: simulated seconds since its epoch.
Clock = Callable[[], float]

#: A CA's ids of a new order from its running number and serial: (order id, certificate id).
OrderIds = Callable[[int, int], tuple[str, str]]

#: The client key pair of in-process settings: no TLS runs there, so no file is opened.
_IN_PROCESS_ONLY: Final = Path("in-process-no-tls.pem")


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """What the simulated accounts accept. Use your own test values in your tests."""

    digicert_api_key: str = "sim-digicert-api-key"
    digicert_org_id: int = 112233
    sectigo_customer_uri: str = "sim-customer"
    sectigo_login: str = "sim-login"
    sectigo_password: str = "sim-password"  # noqa: S105 - a simulator's test value
    sectigo_org_id: int = 4455
    sectigo_cert_type: int = 77
    entrust_ca_id: str = "SIMCA1"
    #: When set, enrollments must name this profile.
    entrust_profile_id: str | None = None
    globalsign_api_key: str = "sim-globalsign-api-key"
    globalsign_api_secret: str = "sim-globalsign-api-secret"  # noqa: S105
    #: GlobalSign access tokens start with this.
    globalsign_token_prefix: str = "sim-token"  # noqa: S105

    def __repr__(self) -> str:
        return "Credentials(...)"

    def settings(
        self,
        ca: CAName,
        url: str,
        *,
        client_cert_path: Path | None = None,
        client_key_path: Path | None = None,
        **options: object,
    ) -> CASettings:
        """Settings that sign ``ca``'s connector in to these accounts at ``url``.

        ``url`` is the simulator's API root for ``ca`` (``sim.base_urls().digicert``, or
        ``served.base_urls.digicert``). Entrust and GlobalSign need a client key pair: pass
        ``ServedCA``'s when served with TLS; in-process, where the connector gets
        ``sim.client()`` and never opens the files, they default to a path that need not
        exist. ``options`` are further settings fields (``poll_max_wait_seconds=60``,
        ``server_ca_path=...``); they win over the accounts' values. Build the connector
        with :func:`certpoll.connector_for`.
        """
        settings_type, values = self._fields(ca, url, client_cert_path, client_key_path)
        if "client_cert_path" in settings_type.model_fields:
            values.setdefault("client_cert_path", _IN_PROCESS_ONLY)
            values.setdefault("client_key_path", _IN_PROCESS_ONLY)
        return settings_type(**(values | options))

    def environment(
        self,
        ca: CAName,
        url: str,
        *,
        client_cert_path: Path | None = None,
        client_key_path: Path | None = None,
    ) -> dict[str, str]:
        """The ``CERTPOLL_<CA>_*`` variables that sign ``ca``'s connector in to these accounts
        at ``url``: for a process that reads its settings from the environment (what
        ``certpoll serve-sim`` prints). Entrust and GlobalSign need the client key pair.
        """
        settings_type, values = self._fields(ca, url, client_cert_path, client_key_path)
        return {settings_type.env_var(field): str(value) for field, value in values.items()}

    def _fields(
        self, ca: CAName, url: str, client_cert_path: Path | None, client_key_path: Path | None
    ) -> tuple[type[CASettings], dict[str, object]]:
        """``ca``'s settings class, and the values of its fields these accounts set."""
        # The connectors' settings (pydantic) load only when asked for.
        from .._connectors.registry import settings_type_for

        settings_type = settings_type_for(ca)
        values: dict[str, object] = {settings_type.url_field: url}
        if ca == "digicert":
            values.update(api_key=self.digicert_api_key, org_id=self.digicert_org_id)
        elif ca == "sectigo":
            values.update(
                customer_uri=self.sectigo_customer_uri,
                login=self.sectigo_login,
                password=self.sectigo_password,
                org_id=self.sectigo_org_id,
                cert_type=self.sectigo_cert_type,
            )
        elif ca == "entrust":
            values["ca_id"] = self.entrust_ca_id
            if self.entrust_profile_id is not None:
                values["profile_id"] = self.entrust_profile_id
        else:
            values.update(api_key=self.globalsign_api_key, api_secret=self.globalsign_api_secret)
        for field, path in (
            ("client_cert_path", client_cert_path),
            ("client_key_path", client_key_path),
        ):
            if path is not None and field in settings_type.model_fields:
                values[field] = path
        return settings_type, values


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderInfo:
    """What the simulator knows about one order, at the time you asked.

    ``certificate`` is the leaf it issued (None until issued); ``serial`` its serial
    number, chosen at submission. ``requests`` counts the requests about this order
    (status, download/collect, revoke), the submission excluded.
    """

    ca: CAName
    order_id: str
    common_name: str
    dns_names: tuple[str, ...]
    script: OrderScript
    state: OrderPhase
    serial: int
    certificate_id: str
    certificate: x509.Certificate | None
    revocation_reason: str | None
    requests: int


@dataclass(slots=True, eq=False)
class Order:
    """One order's state; its phase is computed by :meth:`OrderBook.phase`."""

    ca: CAName
    order_id: str
    created: float
    script: OrderScript
    common_name: str
    dns_names: tuple[str, ...]
    public_key: CertificatePublicKeyTypes | None
    serial: int
    certificate_id: str
    certificate: x509.Certificate | None = None
    revoked: str | None = None
    requests: int = 0
    polls: int = 0
    #: The form the client asked the certificate in (Entrust's requiredFormat).
    answer_format: str | None = None


class OrderBook:
    """Every order of every simulated CA, and the scripts the next ones follow.

    ``rng`` picks scripts from the profile; ``now`` is the simulator's clock.
    """

    def __init__(
        self, *, profile: Profile, pki: TestPKI, rng: random.Random, now: Callable[[], float]
    ) -> None:
        self.profile = profile
        self.pki = pki
        self._rng = rng
        self._now = now
        self._queued: deque[tuple[CAName | None, OrderScript]] = deque()
        self._by_name: dict[str, OrderScript] = {}
        self._orders: dict[tuple[CAName, str], Order] = {}
        self._by_certificate: dict[tuple[CAName, str], Order] = {}
        self._by_serial: dict[tuple[CAName, int], Order] = {}
        self._next_id = 100001

    def __len__(self) -> int:
        return len(self._orders)

    # -- scripting ----------------------------------------------------------------------

    def script_next(self, script: OrderScript, *, ca: CAName | None, count: int) -> None:
        """The next ``count`` orders (of ``ca``, or of any CA) follow ``script``."""
        if count < 1:
            raise ConfigError(f"count must be at least 1, not {count!r}")
        self._queued.extend([(ca, script)] * count)

    def script_common_name(self, common_name: str, script: OrderScript) -> None:
        """Every order for ``common_name`` follows ``script`` (wins over the queue)."""
        self._by_name[common_name.lower()] = script

    def _script_for(self, ca: CAName, common_name: str) -> OrderScript:
        named = self._by_name.get(common_name.lower())
        if named is not None:
            return named
        for index, (wanted, script) in enumerate(self._queued):
            if wanted is None or wanted == ca:
                del self._queued[index]
                return script
        return self.profile.pick(self._rng, ca)

    # -- orders -------------------------------------------------------------------------

    def new_order(
        self,
        ca: CAName,
        *,
        common_name: str,
        dns_names: Iterable[str],
        public_key: CertificatePublicKeyTypes,
        ids: OrderIds,
    ) -> Order:
        """A new order of ``ca``, following the script it is due; ``ids`` names it."""
        number = self._next_id
        self._next_id += 1
        serial = x509.random_serial_number()
        order_id, certificate_id = ids(number, serial)
        names = tuple(dict.fromkeys(n.lower() for n in (common_name, *dns_names) if n))
        order = Order(
            ca=ca,
            order_id=order_id,
            created=self._now(),
            script=self._script_for(ca, common_name),
            common_name=common_name,
            dns_names=names,
            public_key=public_key,
            serial=serial,
            certificate_id=certificate_id,
        )
        self._orders[(ca, order.order_id)] = order
        self._by_certificate[(ca, order.certificate_id)] = order
        self._by_serial[(ca, serial)] = order
        return order

    def phase(self, order: Order) -> OrderPhase:
        """Where ``order`` is now; signs its certificate the first time it is issued."""
        if order.revoked is not None:
            return "revoked"
        elapsed = self._now() - order.created
        script = order.script
        if elapsed < script.approval_for:
            return "approval"
        if elapsed < script.ready_after:
            return "processing"
        if script.reject:
            return "rejected"
        if order.certificate is None:
            assert order.public_key is not None  # dropped only once the leaf exists
            order.certificate = self.pki.issue(
                public_key=order.public_key,
                common_name=order.common_name,
                dns_names=order.dns_names,
                serial=order.serial,
            )
            order.public_key = None
        return "issued"

    def get(self, ca: CAName, order_id: str) -> Order | None:
        """An order by its id, not counted as a request."""
        return self._orders.get((ca, order_id))

    def by_hex_serial(self, ca: CAName, text: str) -> Order | None:
        """An order by its serial in hex, not counted as a request."""
        with contextlib.suppress(ValueError):
            return self._by_serial.get((ca, int(text, 16)))
        return None

    def lookup(self, ca: CAName, order_id: str) -> Order | None:
        """An order by its id, counting the request."""
        return self._counted(self._orders.get((ca, order_id)))

    def lookup_certificate(self, ca: CAName, certificate_id: str) -> Order | None:
        """An order by its certificate id, counting the request."""
        return self._counted(self._by_certificate.get((ca, certificate_id)))

    def lookup_serial(self, ca: CAName, text: str) -> Order | None:
        """An order by serial: decimal, or hex (with or without colons), counting the request."""
        candidates: list[int] = []
        if text.isdigit():
            candidates.append(int(text))
        with contextlib.suppress(ValueError):
            candidates.append(int(text.replace(":", ""), 16))
        for serial in candidates:
            order = self._by_serial.get((ca, serial))
            if order is not None:
                return self._counted(order)
        return None

    @staticmethod
    def _counted(order: Order | None) -> Order | None:
        if order is not None:
            order.requests += 1
        return order

    def info(self, order: Order) -> OrderInfo:
        """What tests see of ``order`` now."""
        state = self.phase(order)
        return OrderInfo(
            ca=order.ca,
            order_id=order.order_id,
            common_name=order.common_name,
            dns_names=order.dns_names,
            script=order.script,
            state=state,
            serial=order.serial,
            certificate_id=order.certificate_id,
            certificate=order.certificate,
            revocation_reason=order.revoked,
            requests=order.requests,
        )
