"""The order store: orders that outlive a process, with leases and fencing tokens.

One row per order, keyed by an idempotency key the caller chooses (or derives from the
request). The life of a row:

1. ``INTENT``: written *before* the order is POSTed, and claimed by the submitter.
2. ``PENDING``: the CA's order id, written in the same step that reads the CA's answer.
   Workers claim due pending orders for a lease, poll them, write back attempts and the
   next due time (``reschedule``), and finally the answer (``complete``).
3. ``ISSUED`` or ``FAILED``: the final answer, written once.

``UNCERTAIN``: the POST may or may not have reached the CA (a
:class:`~certpoll.SubmissionUncertain`, or a submitter that died between the POST and the
write, noticed when its lease on the intent runs out). certpoll never re-POSTs such a row by
itself: a person (or a reconcile step that looks the order up at the CA) decides, with
``resolve``: the order id found (the row becomes ``PENDING``) or none (the row goes).

Every claim bumps the row's fencing ``token``; every write names the token it holds, and a
write whose token is no longer the row's is refused with :class:`~certpoll.LeaseLost`. So an
owner that was paused, partitioned or presumed dead can never overwrite the result of the
owner that reclaimed its order after the lease.

The backends (:mod:`.store_memory`, :mod:`.store_sqlite`, :mod:`.store_postgres`) share the
types, the argument checks and the schema version here; :func:`open_store` picks one by URL.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol, get_args, runtime_checkable

from .._errors import CertpollError, ConfigError, LeaseLost
from .._models import CAName, Certificate, OrderState, OrderStatus
from .urls import Scheme, parse_backend_url

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "STORE_SCHEMES",
    "UNCERTAIN_AFTER_CRASH",
    "Adoption",
    "OrderStore",
    "StoredOrder",
    "StoredState",
    "check_adoptions",
    "check_attempts",
    "check_claim",
    "check_intent",
    "check_lease",
    "check_limit",
    "check_order_id",
    "check_schedules",
    "check_seconds",
    "error_text",
    "final_fields",
    "refusal",
    "newer_schema_error",
    "not_uncertain",
    "open_store",
    "record_from_row",
]

#: The schema this code reads and writes. A store at a higher version was migrated by a newer
#: certpoll and is refused (:func:`newer_schema_error`) rather than misread.
SCHEMA_VERSION: Final = 2

#: The longest lease and the largest claim: a crashed owner's orders come back within a
#: lease, so an hour is already a long outage for them.
MAX_LEASE_SECONDS: Final = 3600.0
MAX_CLAIM: Final = 10_000
#: The longest wait or poll budget a row accepts (about 3,000 years; datetimes end).
MAX_SECONDS: Final = 1e11
_MAX_TEXT: Final = 256
_MAX_ERROR_TEXT: Final = 2000

#: The ``last_error`` of an intent whose submitter's lease ran out before it wrote the
#: CA's answer.
UNCERTAIN_AFTER_CRASH: Final = (
    "the submitting process stopped between sending the order and recording the CA's "
    "answer: the CA may or may not have the order; check it before ordering again"
)

_CA_NAMES: Final = frozenset(get_args(CAName))


class StoredState(enum.StrEnum):
    """Where a stored order stands."""

    #: Recorded before the POST; no order id yet.
    INTENT = "intent"
    #: Submitted; the CA has not answered finally. Workers claim and poll these.
    PENDING = "pending"
    ISSUED = "issued"
    FAILED = "failed"
    #: The POST may or may not have reached the CA; never re-submitted by certpoll itself.
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredOrder:
    """One order as the store holds it.

    ``key`` is the idempotency key (one order per key, ever). ``fingerprint`` identifies the
    request (see :func:`certpoll.request_fingerprint`); ``order_id`` is the CA's id, None
    for an intent. ``attempts`` are the poll attempts recorded so far (a worker writes them
    at each lease renewal and with the final answer, so a crash may undercount them).
    ``token`` is the fencing token of the latest claim: a claimed record is the proof of
    ownership every write must present. ``owner`` and ``lease_until`` say who holds it until
    when. Times are aware UTC datetimes on the store's clock.
    """

    key: str
    ca: CAName
    fingerprint: str
    common_name: str
    state: StoredState
    order_id: str | None
    attempts: int
    token: int
    owner: str | None
    lease_until: datetime | None
    due_at: datetime | None
    deadline: datetime | None
    last_error: str | None
    message: str | None
    certificate: Certificate | None = field(repr=False)
    created_at: datetime
    updated_at: datetime


@runtime_checkable
class OrderStore(Protocol):
    """Durable orders shared by every process on a store URL (see :func:`open_store`).

    Durations are seconds, counted on the store's clock (the server's for PostgreSQL). A
    write that names a record whose claim was taken over raises :class:`~certpoll.LeaseLost`;
    an unreachable store raises :class:`~certpoll.TransientError`.
    """

    @property
    def url(self) -> str:
        """The store's URL as it may be shown: without a password."""
        ...

    async def add_intent(
        self,
        *,
        key: str,
        ca: CAName,
        fingerprint: str,
        common_name: str,
        owner: str,
        lease: float,
    ) -> tuple[StoredOrder, bool]:
        """Record that ``owner`` is about to submit an order, claimed for ``lease`` seconds.

        Returns the record and True when it is new; when ``key`` is already known, the
        stored record, untouched, and False (the caller must not POST again).
        """
        ...

    async def record_submitted(
        self, claimed: StoredOrder, *, order_id: str, deadline_in: float
    ) -> StoredOrder:
        """The CA's answer to an intent: now ``PENDING`` with ``order_id``, due at once,
        polled until ``deadline_in`` seconds from now; still claimed by its submitter."""
        ...

    async def record_uncertain(self, claimed: StoredOrder, *, error: str) -> StoredOrder:
        """An intent whose POST may or may not have reached the CA: ``UNCERTAIN``."""
        ...

    async def withdraw_intent(self, claimed: StoredOrder) -> None:
        """Forget an intent whose POST surely never reached the CA (the key is free again)."""
        ...

    async def resolve(
        self, key: str, *, order_id: str | None, deadline_in: float
    ) -> StoredOrder | None:
        """Settle an ``UNCERTAIN`` order after looking it up at the CA (the reconcile step).

        With the ``order_id`` found there, it becomes ``PENDING`` (due at once, polled for
        ``deadline_in`` seconds) and returns; with None (the CA has no such order) the row is
        removed, freeing its key for a new submission, and None returns. Any other state
        is a :class:`~certpoll.ConfigError`.
        """
        ...

    async def claim(
        self, *, owner: str, cas: Iterable[CAName], limit: int, lease: float
    ) -> list[StoredOrder]:
        """Claim up to ``limit`` due ``PENDING`` orders of ``cas`` (earliest due first) for
        ``lease`` seconds: those unclaimed, and those whose lease ran out. Each claim bumps
        the order's token. Intents whose lease ran out become ``UNCERTAIN`` on the way."""
        ...

    async def adopt(
        self, orders: Sequence[Adoption], *, owner: str, lease: float
    ) -> list[StoredOrder]:
        """Take orders submitted elsewhere into the store, and claim them for ``lease`` seconds.

        Each order whose CA and order id the store does not hold yet is recorded
        ``PENDING`` (keyed ``<ca>:<order_id>``, with its attempts, next poll and deadline).
        Then those of the named orders that are ``PENDING`` and free (unclaimed, or their
        lease ran out) are claimed, whatever their due time. Returns every named
        order the store holds, in the order named: the ones claimed have ``owner`` as their
        owner; the others are final, or held by another owner.
        """
        ...

    async def renew(
        self,
        claimed: Iterable[StoredOrder],
        *,
        lease: float,
        schedules: Mapping[str, tuple[int, float]] | None = None,
    ) -> set[str]:
        """Extend the leases still held by these claims; returns the keys still held.

        ``schedules`` may give, by key, the attempts so far and the seconds until the next
        poll of orders whose schedule moved: written with the renewal (one statement for
        many orders, where a :meth:`reschedule` each would be one per order).
        """
        ...

    async def reschedule(
        self,
        claimed: StoredOrder,
        *,
        attempts: int,
        due_in: float,
        last_error: str | None,
        deadline_in: float | None = None,
    ) -> StoredOrder:
        """After an attempt: ``attempts`` so far, next look in ``due_in`` seconds, the latest
        transient problem; a new poll budget when ``deadline_in`` is given. Still claimed."""
        ...

    async def complete(
        self, claimed: StoredOrder, status: OrderStatus, *, attempts: int
    ) -> StoredOrder:
        """The final answer (``status`` is ``ISSUED`` or ``FAILED``); the claim ends."""
        ...

    async def release(self, claimed: StoredOrder) -> StoredOrder | None:
        """Give a claim back unchanged, for any worker to take when it is due; returns the
        released record, or None when the claim was no longer held (nothing to give back)."""
        ...

    async def get(self, key: str) -> StoredOrder | None:
        """The order with ``key``, if any."""
        ...

    async def orders(
        self,
        *,
        states: Iterable[StoredState] | None = None,
        ca: CAName | None = None,
        limit: int = 1000,
    ) -> list[StoredOrder]:
        """Up to ``limit`` orders (all states unless ``states``), oldest first."""
        ...

    async def counts(self) -> dict[StoredState, int]:
        """How many orders are in each state (every state present, zeros included)."""
        ...

    async def aclose(self) -> None:
        """Close the connections; the orders stay."""
        ...


#: The schemes a ``store_url`` may name.
STORE_SCHEMES: Final[tuple[Scheme, ...]] = ("memory", "sqlite", "postgresql")


def open_store(url: str, *, clock: Callable[[], float] | None = None) -> OrderStore:
    """The order store at ``url``: ``memory://``, ``sqlite:///path`` or ``postgresql://…``.

    ``clock`` (seconds since the epoch) replaces the wall clock of the memory and SQLite
    stores, for tests; PostgreSQL always uses its server's clock, so ``clock`` is refused
    there. The schema is created or migrated on first use. Raises
    :class:`~certpoll.ConfigError` for a bad URL (never showing its password).
    """
    parsed = parse_backend_url(url, setting="store_url", allowed=STORE_SCHEMES)
    if parsed.scheme == "memory":
        from .store_memory import MemoryOrderStore

        return MemoryOrderStore(clock=clock)
    if parsed.scheme == "sqlite":
        from .store_sqlite import SQLiteOrderStore

        return SQLiteOrderStore(parsed, clock=clock)
    if clock is not None:
        raise ConfigError("a PostgreSQL order store keeps time on the server's clock: no clock=")
    from .store_postgres import PostgresOrderStore

    return PostgresOrderStore(parsed)


# -- what every backend checks the same way ------------------------------------------------


def _text(value: object, name: str, *, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ConfigError(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def check_seconds(value: float, name: str, *, upper: float = MAX_SECONDS) -> float:
    """``value`` as seconds in ``[0, upper]``, or a :class:`ConfigError`."""
    number: object = value
    if isinstance(number, bool) or not isinstance(number, int | float) or math.isnan(value):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 <= value <= upper:
        raise ConfigError(f"{name} must be between 0 and {upper:g} seconds, not {value!r}")
    return float(value)


def check_attempts(attempts: int) -> int:
    """A count of attempts: an integer, 0 or more."""
    given: object = attempts
    if isinstance(given, bool) or not isinstance(given, int) or attempts < 0:
        raise ConfigError(f"attempts must be an integer, 0 or more, not {attempts!r}")
    return attempts


def check_lease(lease: float) -> float:
    """A lease: more than nothing, at most :data:`MAX_LEASE_SECONDS`."""
    seconds = check_seconds(lease, "lease", upper=MAX_LEASE_SECONDS)
    if seconds <= 0:
        raise ConfigError("lease must be more than 0 seconds")
    return seconds


def check_intent(*, key: str, ca: str, fingerprint: str, common_name: str, owner: str) -> None:
    """The fields of a new intent, or a :class:`ConfigError`."""
    _text(key, "key")
    if ca not in _CA_NAMES:
        raise ConfigError(f"ca must be one of {sorted(_CA_NAMES)}, not {ca!r}")
    _text(fingerprint, "fingerprint")
    _text(common_name, "common_name", limit=1024)
    _text(owner, "owner")


def check_claim(*, owner: str, cas: Iterable[CAName], limit: int) -> tuple[CAName, ...]:
    """The CAs of a claim, checked with its owner and limit."""
    _text(owner, "owner")
    if isinstance(cas, str):
        raise ConfigError("cas must be a collection of CA names, not one string")
    chosen = tuple(dict.fromkeys(cas))
    unknown = [ca for ca in chosen if ca not in _CA_NAMES]
    if unknown or not chosen:
        raise ConfigError(f"cas must name some of {sorted(_CA_NAMES)}, not {list(chosen)!r}")
    check_limit(limit)
    return chosen


def check_limit(limit: int) -> int:
    """How many orders one call may return: 1 to :data:`MAX_CLAIM`."""
    given: object = limit
    if isinstance(given, bool) or not isinstance(given, int) or not 1 <= limit <= MAX_CLAIM:
        raise ConfigError(f"limit must be an integer from 1 to {MAX_CLAIM}, not {limit!r}")
    return limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Adoption:
    """An order to take into a store (:meth:`OrderStore.adopt`): where its schedule stands,
    its times in seconds from now (:func:`certpoll.poll_many` makes these from the
    :class:`~certpoll.PendingOrder` handles it is given)."""

    ca: CAName
    order_id: str
    attempts: int = 0
    due_in: float = 0.0
    deadline_in: float

    @property
    def key(self) -> str:
        """The idempotency key an adopted order is stored under."""
        return f"{self.ca}:{self.order_id}"


def check_adoptions(orders: Sequence[Adoption]) -> Sequence[Adoption]:
    """The orders to adopt, checked: known CAs, order ids, counts and times; each once."""
    for order in orders:
        if order.ca not in _CA_NAMES:
            raise ConfigError(f"ca must be one of {sorted(_CA_NAMES)}, not {order.ca!r}")
        check_order_id(order.order_id)
        check_attempts(order.attempts)
        check_seconds(order.due_in, "due_in")
        check_seconds(order.deadline_in, "deadline_in")
    if len({order.key for order in orders}) != len(orders):
        raise ConfigError("an order is named twice")
    if len(orders) > MAX_CLAIM:
        raise ConfigError(f"at most {MAX_CLAIM} orders are adopted at once, not {len(orders)}")
    return orders


def check_order_id(order_id: str) -> str:
    """The CA's order id as stored."""
    return _text(order_id, "order_id")


def check_schedules(
    schedules: Mapping[str, tuple[int, float]] | None,
) -> Mapping[str, tuple[int, float]]:
    """The schedules given to a renewal: attempts and seconds until the next poll, by key."""
    if schedules is None:
        return {}
    for attempts, due_in in schedules.values():
        check_attempts(attempts)
        check_seconds(due_in, "due_in")
    return schedules


def error_text(error: str | None) -> str | None:
    """An error message as stored: bounded (the caller has already redacted it)."""
    return None if error is None else error[:_MAX_ERROR_TEXT]


def final_fields(status: OrderStatus) -> tuple[StoredState, str | None, str | None, str | None]:
    """The state, message, last error and certificate JSON a final ``status`` is stored as."""
    if status.state is OrderState.ISSUED:
        state = StoredState.ISSUED
    elif status.state is OrderState.FAILED:
        state = StoredState.FAILED
    else:
        raise ConfigError(f"only an issued or failed status is final, not {status.state.value}")
    last_error = None if status.last_error is None else error_text(str(status.last_error))
    certificate = None if status.certificate is None else certificate_json(status.certificate)
    return state, status.message, last_error, certificate


def certificate_json(certificate: Certificate) -> str:
    """A certificate as one JSON text column."""
    return json.dumps(
        {
            "pem": certificate.pem,
            "chain_pem": certificate.chain_pem,
            "serial": certificate.serial,
            "not_before": certificate.not_before.isoformat(),
            "not_after": certificate.not_after.isoformat(),
            "ca_certificate_id": certificate.ca_certificate_id,
        },
        separators=(",", ":"),
    )


def _certificate(text: str | None) -> Certificate | None:
    if text is None:
        return None
    data = json.loads(text)
    return Certificate(
        pem=data["pem"],
        chain_pem=data["chain_pem"],
        serial=data["serial"],
        not_before=datetime.fromisoformat(data["not_before"]),
        not_after=datetime.fromisoformat(data["not_after"]),
        ca_certificate_id=data["ca_certificate_id"],
    )


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


#: The columns of a row, in the order every backend stores and selects them.
COLUMNS: Final[Sequence[str]] = (
    "key",
    "ca",
    "fingerprint",
    "common_name",
    "state",
    "order_id",
    "attempts",
    "token",
    "owner",
    "lease_until",
    "due_at",
    "deadline",
    "last_error",
    "message",
    "certificate",
    "created_at",
    "updated_at",
)


def record_from_row(row: Mapping[str, object]) -> StoredOrder:
    """A :class:`StoredOrder` from a row of :data:`COLUMNS` (times as epoch seconds)."""

    def seconds(name: str) -> float | None:
        value = row[name]
        return None if value is None else float(value)  # type: ignore[arg-type]

    created, updated = seconds("created_at"), seconds("updated_at")
    assert created is not None and updated is not None  # noqa: PT018 -- NOT NULL columns
    return StoredOrder(
        key=str(row["key"]),
        ca=row["ca"],  # type: ignore[arg-type]
        fingerprint=str(row["fingerprint"]),
        common_name=str(row["common_name"]),
        state=StoredState(str(row["state"])),
        order_id=None if row["order_id"] is None else str(row["order_id"]),
        attempts=int(row["attempts"]),  # type: ignore[call-overload]
        token=int(row["token"]),  # type: ignore[call-overload]
        owner=None if row["owner"] is None else str(row["owner"]),
        lease_until=_time(seconds("lease_until")),
        due_at=_time(seconds("due_at")),
        deadline=_time(seconds("deadline")),
        last_error=None if row["last_error"] is None else str(row["last_error"]),
        message=None if row["message"] is None else str(row["message"]),
        certificate=_certificate(row["certificate"]),  # type: ignore[arg-type]
        created_at=datetime.fromtimestamp(created, UTC),
        updated_at=datetime.fromtimestamp(updated, UTC),
    )


def refusal(
    claimed: StoredOrder, current: StoredOrder | None, expected: StoredState, doing: str
) -> CertpollError:
    """Why a write by ``claimed`` found nothing to change, given the row as it is now.

    Another token (or no row): :class:`LeaseLost`. The right token but another state: the
    caller's mistake, a :class:`ConfigError`.
    """
    if current is None or current.token != claimed.token:
        return LeaseLost(
            f"order {claimed.key!r} ({claimed.ca}) was claimed by another owner after the "
            f"lease of claim {claimed.token} ran out: {doing} refused",
            key=claimed.key,
            token=claimed.token,
        )
    return ConfigError(
        f"order {claimed.key!r} is {current.state.value}, not {expected.value}: {doing} refused"
    )


def not_uncertain(key: str, state: StoredState | None) -> ConfigError:
    """The refusal of a ``resolve`` on an order that is not uncertain."""
    found = "unknown" if state is None else state.value
    return ConfigError(f"order {key!r} is {found}: only an uncertain order is resolved")


def newer_schema_error(found: int, where: str) -> ConfigError:
    """A store migrated by a newer certpoll: refused, never misread."""
    return ConfigError(
        f"the order store at {where} has schema version {found}, newer than this certpoll "
        f"understands (version {SCHEMA_VERSION}): upgrade certpoll on this host"
    )
