"""The gate's shared state: one protocol, four backends, chosen from ``gate_url``.

The gate (:mod:`certpoll._gate`) decides *who* waits in this process; a backend decides
*whether* a request may go now, for every process on the credential at once. Each backend
runs the same rules (:mod:`certpoll._backends.gate_state`, and its twins in Lua on Redis and
PL/pgSQL on PostgreSQL) in one atomic step on one clock:

- ``memory://``: this process only; the event loop's clock, so it runs on virtual time.
- ``sqlite:///path``: one file on one host, ``BEGIN IMMEDIATE``; the host's wall clock.
- ``redis://…``: one Lua script (``EVALSHA``) on the server's ``TIME``.
- ``postgresql://…``: one function call (its own transaction) on ``clock_timestamp()``.

Redis and PostgreSQL never read the client's clock, so replicas whose clocks disagree still
share one limit; the price is that they cannot run on virtual time.

A backend that cannot be reached raises :class:`~certpoll.TransientError` naming it (never
with its password): there is no silent fall-back to an unshared gate.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .._errors import ConfigError, TransientError
from .urls import BackendURL, Scheme, parse_backend_url

__all__ = [
    "DEFAULT_LOST_AFTER",
    "DEFAULT_MARGIN",
    "EPSILON",
    "GATE_SCHEMES",
    "LONGEST_HOLD",
    "MIN_WAIT",
    "Admitted",
    "Answer",
    "GateBackend",
    "GateRules",
    "Hold",
    "Wait",
    "gate_key",
    "open_gate_backend",
    "unreachable",
]

#: Added to every window: a hit counts ``seconds + margin`` after its answer arrived. It
#: absorbs what the answer time cannot see: a CA's window edges and clock rate against ours.
DEFAULT_MARGIN = 0.1
#: A request whose answer never comes (its process was killed) counts as answered this long
#: after its admission; a probe that never answers is given up after it. It must exceed the
#: longest a request can take, so it is well above the default attempt timeout (30 s).
DEFAULT_LOST_AFTER = 60.0
#: How often a process asks again while another process's probe is out.
DEFAULT_RECHECK = 0.25
#: Float slack, on the safe side: a hit leaves a window only this long after its edge.
EPSILON = 1e-5
#: The longest hold a ``Retry-After`` can ask for (a day): beyond it is a broken header.
LONGEST_HOLD = 86400.0
#: A wait is never shorter than this: timers fire early by up to their resolution.
MIN_WAIT = 1e-3


@dataclass(frozen=True, slots=True)
class GateRules:
    """What a backend enforces for one key; passed with every call, so nothing is stored."""

    #: ``(requests, seconds)`` sliding windows, all enforced at once.
    limits: tuple[tuple[int, float], ...] = ()
    margin: float = DEFAULT_MARGIN
    lost_after: float = DEFAULT_LOST_AFTER
    #: The holds after the 1st, 2nd, ... 429 in a row without ``Retry-After``; the last one
    #: repeats. (The gate computes them from its cooldown policy.)
    cooldowns: tuple[float, ...] = (5.0, 15.0, 45.0, 135.0, 300.0)
    recheck: float = DEFAULT_RECHECK
    #: Pace admissions at the fastest window's rate (100 / 5 s: one per 50 ms) with a burst
    #: of half that window (50 at once from idle), as a token bucket does: a window never
    #: goes in one instant (a burst that latency jitter heaps up at the CA), a few requests
    #: are never slowed down, and a lull is made up for, up to the burst.
    pace: bool = True

    def __post_init__(self) -> None:
        for name in ("margin", "lost_after", "recheck"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"gate {name} must be a finite number of seconds >= 0")
        if not self.cooldowns or not all(math.isfinite(c) and c >= 0 for c in self.cooldowns):
            raise ConfigError("gate cooldowns must be one or more finite numbers of seconds")

    @property
    def spacing(self) -> float:
        """The average gap between paced admissions: the fastest window's (0: no pacing)."""
        if not self.pace or not self.limits:
            return 0.0
        return min(seconds / requests for requests, seconds in self.limits)

    @property
    def burst(self) -> int:
        """How many admissions may go at once before the pace applies."""
        if not self.spacing:
            return 0
        fastest = min(self.limits, key=lambda limit: limit[1] / limit[0])
        return max(1, fastest[0] // 2)

    @property
    def longest(self) -> float:
        """How long a hit can still count: the longest window plus the margin."""
        return max((seconds for _, seconds in self.limits), default=0.0) + self.margin

    def cooldown(self, strikes: int) -> float:
        """The hold after the ``strikes + 1``-th 429 in a row without ``Retry-After``."""
        return self.cooldowns[min(strikes, len(self.cooldowns) - 1)]


@dataclass(frozen=True, slots=True)
class Admitted:
    """The request may go now. Report its answer with ``ticket``."""

    ticket: str
    #: True when it is the one probe sent fleet-wide after a cooldown.
    probe: bool


@dataclass(frozen=True, slots=True)
class Wait:
    """Ask again in ``seconds``; ``for_probe``: a probe is out and its answer will decide."""

    seconds: float
    for_probe: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold every request on the key for ``seconds`` (None: the growing cooldown).

    A negative or NaN ``seconds`` is no wait; one beyond :data:`LONGEST_HOLD` is that long.
    """

    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.seconds is not None:
            seconds = self.seconds if self.seconds >= 0 else 0.0  # NaN compares false
            object.__setattr__(self, "seconds", min(seconds, LONGEST_HOLD))


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of an admitted request, for :meth:`GateBackend.report`.

    ``ticket`` is the request's (None: no request, only a hold). ``conclusive`` is False
    when the request failed on this side (cancelled, timed out, an exception) so its answer
    says nothing of the CA; ``hold`` holds every request on the key.
    """

    ticket: str | None
    conclusive: bool = True
    hold: Hold | None = None


class GateBackend(Protocol):
    """Where an :class:`~certpoll.UpstreamGate` keeps the state it shares with other processes.

    :func:`open_gate_backend` makes the four certpoll ships (``memory://``, SQLite, Redis,
    PostgreSQL); this protocol is for one of your own. Its contract:

    - Every method is **one atomic step** on one clock that every process on the backend
      reads: no two steps on a key ever decide on the same state.
    - State is per ``key`` (:func:`gate_key`: the CA and a keyed hash of the credential);
      the :class:`GateRules` come with every call, so a backend stores no configuration.
    - :meth:`admit` checks every window, the pace and the hold, and either records the
      request (returning :class:`Admitted` with a ticket unique on the key) or says how long
      to wait (:class:`Wait`). :meth:`report` is told what became of a ticket
      (:class:`Answer`). The rules themselves are spelled out on :class:`GateRules`,
      :class:`Answer` and in docs/many-orders.md ("Many processes").
    - A backend that cannot be reached raises :class:`~certpoll.TransientError` naming it
      without its password; it never falls back to state of its own.
    """

    #: The backend's URL without its password, for messages.
    name: str

    async def admit(self, key: str, rules: GateRules) -> Admitted | Wait:
        """Admit one request now (recording it in every window), or say how long to wait."""
        ...

    async def report(self, key: str, rules: GateRules, answer: Answer) -> float:
        """The answer to ``answer.ticket`` arrived (or, without a ticket, only a hold).

        The hit then counts from now; a hold holds every request on the key; a probe's
        conclusive answer without a hold ends the cooldown, otherwise the next request
        becomes the probe. Returns the seconds the key is held from now (0: not held).
        """
        ...

    async def aclose(self) -> None:
        """Close connections; the shared state stays."""
        ...


#: The URL schemes a gate backend can have.
GATE_SCHEMES: tuple[Scheme, ...] = ("memory", "sqlite", "redis", "postgresql")

#: Not a secret: it separates certpoll's keys from any other use of the same hash.
_KEY_DOMAIN = b"certpoll gate key v1"


def gate_key(ca: str, credential: str) -> str:
    """The backend key of one CA account: the CA's name and a keyed hash of the credential.

    Every process with the same credential gets the same key; the credential itself is
    never stored, and a CA API key is too random to be guessed back from its hash.
    """
    digest = hmac.new(_KEY_DOMAIN, f"{ca}\0{credential}".encode(), hashlib.sha256).hexdigest()
    return f"certpoll:gate:{ca}:{digest[:32]}"


def unreachable(backend: BackendURL, exc: BaseException) -> TransientError:
    """The error for a backend that did not answer: its URL and the cause, no password.

    Raise it ``from exc``. certpoll never falls back to an unshared gate: that would break
    the fleet's limit without a word.
    """
    cause = f"{type(exc).__name__}: {exc}"
    password = urlsplit(backend.url).password
    if password:
        cause = cause.replace(password, "***")
    return TransientError(f"the shared gate at {backend.redacted} is unavailable ({cause})")


def open_gate_backend(
    url: str,
    *,
    setting: str = "gate_url",
    clock: Callable[[], float] | None = None,
) -> GateBackend:
    """The backend ``url`` names. Nothing connects until the first call.

    ``clock`` is the clock of ``memory://`` (default: the event loop's). The others keep
    a clock every process shares: SQLite the host's wall clock, Redis and PostgreSQL the
    server's.
    """
    parsed = parse_backend_url(url, setting=setting, allowed=GATE_SCHEMES)
    if parsed.scheme == "memory":
        from .gate_memory import MemoryGate

        return MemoryGate(clock=clock)
    if parsed.scheme == "sqlite":
        from .gate_sqlite import SQLiteGate

        return SQLiteGate(parsed)
    if parsed.scheme == "redis":
        _require("redis", "redis", parsed, setting)
        from .gate_redis import RedisGate

        return RedisGate(parsed)
    _require("asyncpg", "postgres", parsed, setting)
    from .gate_postgres import PostgresGate

    return PostgresGate(parsed)


def _require(module: str, extra: str, url: BackendURL, setting: str) -> None:
    """Fail at once, naming the extra to install, if ``url``'s client library is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{setting} {url.redacted} needs the {module} client: pip install 'certpoll[{extra}]'"
        ) from None
