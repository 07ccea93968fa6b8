"""Scripts for the simulated CA: what happens to each order, and CA-wide fault windows.

All times are in *simulated* seconds (the simulator's clock, which runs ``speed`` times
faster than the event loop's clock).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .._errors import ConfigError
from .._models import CAName

__all__ = ["BodyFault", "Fault", "OrderScript", "Profile"]

_CAS: frozenset[str] = frozenset({"digicert", "sectigo", "entrust", "globalsign"})


class BodyFault(enum.Enum):
    """A broken 200 answer to a status request."""

    #: Valid JSON cut off half-way.
    TRUNCATED = "truncated"
    #: An HTML error page instead of JSON.
    NOT_JSON = "not_json"
    #: JSON without the status field.
    MISSING_FIELD = "missing_field"


def _non_negative(name: str, value: float) -> None:
    if math.isnan(value) or value < 0:
        raise ConfigError(f"{name} must be a number of seconds >= 0, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderScript:
    """What happens to one order, from the moment it is submitted.

    The order waits ``approval_for`` seconds for approval (DigiCert ``needs_approval``,
    Sectigo ``Requested``, Entrust ``AWAITING_APPROVAL``, GlobalSign 202), is then processed
    for ``issue_after`` seconds (``pending``, ``Applied``, ``PENDING``, 202), and is then
    issued, or rejected when ``reject`` is set. With both at 0 it is issued at once.

    ``collect_not_ready_for``: after issuance, Sectigo's collect still answers "not ready"
    (HTTP 400, code -183) for this long. ``errors``: the first status requests of this order
    are answered, one each, with these HTTP status codes (429 carries ``retry_after`` when
    set, as ``Retry-After``) or broken bodies (:class:`BodyFault`).

    ``awkward``: the order is answered in the real shapes that trip naive clients: Sectigo
    sends every PEM bundle root first (as its ``x509`` bundle always is), Entrust calls the
    issued enrollment ``ACCEPTED``. (DigiCert's immediate issuance on the order answer and
    GlobalSign's worded 202 are what every order gets.)
    """

    issue_after: float = 0.0
    approval_for: float = 0.0
    reject: bool = False
    collect_not_ready_for: float = 0.0
    errors: tuple[int | BodyFault, ...] = ()
    retry_after: float | None = None
    awkward: bool = False

    def __post_init__(self) -> None:
        _non_negative("issue_after", self.issue_after)
        _non_negative("approval_for", self.approval_for)
        _non_negative("collect_not_ready_for", self.collect_not_ready_for)
        if self.retry_after is not None:
            _non_negative("retry_after", self.retry_after)
        for error in self.errors:
            if not isinstance(error, BodyFault) and not 400 <= error <= 599:
                raise ConfigError(f"errors holds {error!r}: not an HTTP error status or BodyFault")

    @property
    def ready_after(self) -> float:
        """Seconds from submission to issuance (or rejection)."""
        return self.approval_for + self.issue_after


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A CA-wide fault window: from ``start`` for ``duration`` simulated seconds.

    Every request to ``ca`` (every CA when None) in the window waits ``latency`` seconds,
    then, when ``status`` is set, is answered with that HTTP status (with probability
    ``probability``) before authentication: 429 (with ``Retry-After: retry_after`` when
    set) for a burst of throttling, 5xx for a maintenance window. ``start`` counts from the
    simulator's epoch (see :attr:`SimulatedCA.epoch`).
    """

    start: float = 0.0
    duration: float = math.inf
    ca: CAName | None = None
    status: int | None = None
    retry_after: float | None = None
    latency: float = 0.0
    probability: float = 1.0

    def __post_init__(self) -> None:
        _non_negative("start", self.start)
        _non_negative("duration", self.duration)
        _non_negative("latency", self.latency)
        if self.retry_after is not None:
            _non_negative("retry_after", self.retry_after)
        if self.status is not None and not 400 <= self.status <= 599:
            raise ConfigError(f"status must be an HTTP error status, not {self.status!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError(f"probability must be within [0, 1], not {self.probability!r}")
        if self.ca is not None and self.ca not in _CAS:
            raise ConfigError(f"ca must be one of {sorted(_CAS)}, not {self.ca!r}")

    def active(self, now: float, ca: str) -> bool:
        """Whether the window covers ``now`` (seconds since the epoch) for ``ca``."""
        return (self.ca is None or self.ca == ca) and self.start <= now < self.start + self.duration

    @classmethod
    def rate_limit(
        cls,
        *,
        start: float = 0.0,
        duration: float,
        retry_after: float | None = None,
        ca: CAName | None = None,
    ) -> Fault:
        """A burst of HTTP 429, with or without ``Retry-After``."""
        return cls(start=start, duration=duration, status=429, retry_after=retry_after, ca=ca)

    @classmethod
    def outage(
        cls, *, start: float = 0.0, duration: float, status: int = 503, ca: CAName | None = None
    ) -> Fault:
        """A 5xx window, like DigiCert's 15–20 minute maintenance windows."""
        return cls(start=start, duration=duration, status=status, ca=ca)

    @classmethod
    def slow(
        cls,
        latency: float,
        *,
        start: float = 0.0,
        duration: float = math.inf,
        ca: CAName | None = None,
    ) -> Fault:
        """Latency on every answer."""
        return cls(start=start, duration=duration, latency=latency, ca=ca)


def _at_once(rng: random.Random, ca: CAName) -> OrderScript:
    return OrderScript()


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """How the simulated CA scripts each new order, and its CA-wide faults.

    ``pick(rng, ca)`` returns the script of a new order of ``ca``; ``rng`` is the
    simulator's own ``random.Random(seed)``, so a profile with a seed replays exactly.
    The default profile issues every order at once, with no faults.
    """

    pick: Callable[[random.Random, CAName], OrderScript] = field(default=_at_once)
    faults: tuple[Fault, ...] = ()
    seed: int = 0

    @classmethod
    def fixed(cls, script: OrderScript, *, faults: tuple[Fault, ...] = ()) -> Profile:
        """Every order gets ``script``."""
        return cls(pick=lambda rng, ca: script, faults=faults)

    @classmethod
    def realistic(cls, seed: int = 0) -> Profile:
        """A mix of what real CAs do, replayable from ``seed``.

        Per order: about a third issue within seconds (on DigiCert, a fifth of those at once,
        the certificate in the order's answer), a third within minutes, a tenth wait hours
        for approval, one in twenty is rejected, and some meet a 503 or a 429 (half of them
        with ``Retry-After``) or, on Sectigo, a collect that is not ready yet. A third of the
        orders are answered in the awkward real shapes (see :class:`OrderScript`). CA-wide:
        10–150 ms latency, a 15-minute DigiCert maintenance window (503) an hour in, and a
        2-minute Sectigo burst of 429 without ``Retry-After`` at 20 minutes.
        """

        def pick(rng: random.Random, ca: CAName) -> OrderScript:
            roll = rng.random()
            errors: tuple[int | BodyFault, ...] = ()
            retry_after: float | None = None
            if rng.random() < 0.05:
                errors = (503,)
            elif rng.random() < 0.05:
                errors = (429, 429)
                retry_after = rng.choice([None, 3.0, 20.0])
            not_ready = rng.uniform(5, 60) if ca == "sectigo" and rng.random() < 0.3 else 0.0
            awkward = rng.random() < 1 / 3
            if roll < 0.85:
                if roll >= 0.35:
                    issue_after = rng.uniform(30, 900)
                elif ca == "digicert" and rng.random() < 0.2:
                    issue_after = 0.0  # DigiCert issues some orders at once
                else:
                    issue_after = rng.uniform(0, 30)
                return OrderScript(
                    issue_after=issue_after,
                    errors=errors,
                    retry_after=retry_after,
                    collect_not_ready_for=not_ready,
                    awkward=awkward,
                )
            if roll < 0.95:
                return OrderScript(
                    approval_for=rng.uniform(600, 4 * 3600),
                    issue_after=rng.uniform(5, 120),
                    errors=errors,
                    retry_after=retry_after,
                    awkward=awkward,
                )
            return OrderScript(issue_after=rng.uniform(10, 600), reject=True, awkward=awkward)

        faults = (
            Fault(latency=0.01),
            Fault(latency=0.14, probability=0.2),
            Fault.outage(start=3600, duration=900, ca="digicert"),
            Fault.rate_limit(start=1200, duration=120, ca="sectigo"),
        )
        return cls(pick=pick, faults=faults, seed=seed)
