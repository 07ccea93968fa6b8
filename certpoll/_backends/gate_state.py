"""The gate's rules over one key's state, given the time: used by memory and SQLite.

(Redis and PostgreSQL run the same rules on the server, as a Lua script and a PL/pgSQL
function: :mod:`certpoll._backends.gate_redis`, :mod:`certpoll._backends.gate_postgres`.)

A request is a *hit* in every window from its admission until its answer arrives, and then
for ``seconds + margin`` more. The CA counts it from its arrival, which lies between the two,
so whatever the latency, no window of the CA ever holds more than the gate let through. A
hit whose answer never comes (its process died) counts as answered ``lost_after`` seconds
after its admission.

Admission also paces, as a token bucket: at the fastest window's ``seconds / requests``
apart, with a burst of half that window, so a window frees a request at a time instead of
all at once, and a lull is made up for.

The 429 cooldown: a hold sets ``not_before``; after it exactly one request, the probe, goes;
its conclusive answer without a hold ends the cooldown, a hold extends it (growing), and a
probe unanswered for ``lost_after`` is given up so that the next request probes instead.
"""

from __future__ import annotations

import abc
import json
import math
from array import array
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .gate import EPSILON, MIN_WAIT, Admitted, Answer, GateRules, Wait

__all__ = ["GateState", "SteppedGate"]

_T = TypeVar("_T")


@dataclass
class GateState:
    """One key's shared state; times are the backend clock's seconds."""

    #: Effective answer times of the hits that may still count, sorted.
    answered: list[float] = field(default_factory=list)
    #: Ticket -> admission time of the hits still waiting for their answer, oldest first.
    outstanding: dict[str, float] = field(default_factory=dict)
    #: When the next paced admission is due (the token bucket's "theoretical arrival time").
    paced_at: float = -math.inf
    cooling: bool = False
    not_before: float = -math.inf
    strikes: int = 0
    probe: str | None = None
    probe_deadline: float = -math.inf
    issued: int = 0

    def admit(self, now: float, rules: GateRules) -> Admitted | Wait:
        """Admit one request at ``now`` and record it, or say how long to wait."""
        self._expire(now, rules)
        if self.cooling:
            if now < self.not_before:
                return Wait(max(self.not_before - now, MIN_WAIT))
            if self.probe is not None:
                return Wait(rules.recheck, for_probe=True)
        # The pace: up to ``burst`` ahead of the schedule, one ``spacing`` per admission.
        wait = 0.0
        if rules.spacing:
            # Not a limit, a pace: float dust may round either way.
            wait = self.paced_at - rules.spacing * (rules.burst - 1) - now
            wait = 0.0 if wait <= EPSILON else wait
        for requests, seconds in rules.limits:
            span = seconds + rules.margin + EPSILON
            first = bisect_left(self.answered, now - span)
            counted = len(self.answered) - first
            excess = counted + len(self.outstanding) - requests + 1
            if excess <= 0:
                continue
            if excess <= counted:
                wait = max(wait, self.answered[first + excess - 1] + span - now)
            else:
                # Waiting on answers yet to come: none can free its place sooner than this.
                wait = max(wait, span)
        if wait > 0:
            return Wait(max(wait, MIN_WAIT))
        self.issued += 1
        ticket = str(self.issued)
        self.outstanding[ticket] = now
        self.paced_at = max(self.paced_at, now) + rules.spacing
        if self.cooling:
            self.probe = ticket
            self.probe_deadline = now + rules.lost_after
        return Admitted(ticket, probe=self.cooling)

    def report(self, now: float, rules: GateRules, answer: Answer) -> float:
        """The answer arrived at ``now``; see :meth:`GateBackend.report`."""
        ticket, hold = answer.ticket, answer.hold
        if ticket is not None and self.outstanding.pop(ticket, None) is not None:
            insort(self.answered, now)
        is_probe = ticket is not None and ticket == self.probe
        if hold is not None:
            self._hold(now, rules, hold.seconds, probe=is_probe)
        if is_probe:
            self.probe = None
            if answer.conclusive and hold is None:
                self.cooling = False
                self.strikes = 0
                self.not_before = -math.inf
        return max(0.0, self.not_before - now) if self.cooling else 0.0

    def _hold(self, now: float, rules: GateRules, seconds: float | None, *, probe: bool) -> None:
        if probe:
            self.strikes += 1
        elif not self.cooling:
            self.cooling = True
            self.strikes = 0
            self.not_before = now
        delay = rules.cooldown(self.strikes) if seconds is None else seconds
        self.not_before = max(self.not_before, now + delay)

    def _expire(self, now: float, rules: GateRules) -> None:
        """Count lost hits as answered, give up a lost probe, forget what no window counts."""
        while self.outstanding:
            ticket, admitted = next(iter(self.outstanding.items()))
            if admitted + rules.lost_after >= now:
                break
            del self.outstanding[ticket]
            insort(self.answered, admitted + rules.lost_after)
        if self.probe is not None and now > self.probe_deadline:
            self.probe = None
        del self.answered[: bisect_left(self.answered, now - rules.longest - 1.0)]

    # -- storage, for the backends that keep the state in a row -----------------------------

    def dump(self) -> tuple[str, bytes]:
        """The state as stored: JSON text of all but the answer times (``-inf`` as null),
        and those packed.

        The answer times are a window's worth of numbers (1,000 at DigiCert's limit): as
        JSON they cost ~1 ms a step to write and read, packed as 8-byte floats ~0.05 ms.
        """
        fields = json.dumps(
            [
                list(self.outstanding.items()),
                _finite(self.paced_at),
                self.cooling,
                _finite(self.not_before),
                self.strikes,
                self.probe,
                _finite(self.probe_deadline),
                self.issued,
            ],
            separators=(",", ":"),
        )
        return fields, array("d", self.answered).tobytes()

    @classmethod
    def load(cls, fields: str, answered: bytes) -> GateState:
        """The state :meth:`dump` wrote (the floats in this host's byte order: one host)."""
        outstanding, paced_at, cooling, not_before, strikes, probe, deadline, issued = json.loads(
            fields
        )
        return cls(
            answered=array("d", answered).tolist(),
            outstanding=dict(outstanding),
            paced_at=_time(paced_at),
            cooling=cooling,
            not_before=_time(not_before),
            strikes=strikes,
            probe=probe,
            probe_deadline=_time(deadline),
            issued=issued,
        )


def _finite(value: float) -> float | None:
    return None if value == -math.inf else value


def _time(value: float | None) -> float:
    return -math.inf if value is None else value


class SteppedGate(abc.ABC):
    """A backend that runs these rules on one key's :class:`GateState`, one step per call.

    A subclass says how a step is made atomic, on which clock: :meth:`step`.
    """

    @abc.abstractmethod
    async def step(self, key: str, decide: Callable[[GateState, float], _T]) -> _T:
        """Load ``key``'s state, call ``decide(state, now)``, store the state; atomically."""

    async def admit(self, key: str, rules: GateRules) -> Admitted | Wait:
        """See :meth:`GateBackend.admit`."""
        return await self.step(key, lambda state, now: state.admit(now, rules))

    async def report(self, key: str, rules: GateRules, answer: Answer) -> float:
        """See :meth:`GateBackend.report`."""
        return await self.step(key, lambda state, now: state.report(now, rules, answer))
