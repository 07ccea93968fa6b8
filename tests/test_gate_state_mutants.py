"""The gate's rules, exactly: what tests/test_gate_backends.py checks on every backend by
shape, checked here to the edge on the pure parts (no server, no loop clock).

Written against the survivors of ``make mutate`` (docs/testing-internals.md) on
``certpoll._backends.gate_state`` and ``certpoll._backends.gate``: every window's edge, the
index of the hit that frees a place, the pace and its burst, the hold and its probe, a lost
hit and a lost probe, what is forgotten, the state as text, the rules' checks, the key, and
the messages. Times start far from 0 (``T0``), so a time measured from the wrong origin shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certpoll import ConfigError, TransientError
from certpoll._backends.gate import (
    DEFAULT_LOST_AFTER,
    DEFAULT_MARGIN,
    DEFAULT_RECHECK,
    EPSILON,
    GATE_SCHEMES,
    LONGEST_HOLD,
    MIN_WAIT,
    Admitted,
    Answer,
    GateBackend,
    GateRules,
    Hold,
    Wait,
    gate_key,
    open_gate_backend,
    unreachable,
)
from certpoll._backends.gate_memory import MemoryGate
from certpoll._backends.gate_postgres import PostgresGate
from certpoll._backends.gate_redis import RedisGate
from certpoll._backends.gate_sqlite import SQLiteGate
from certpoll._backends.gate_state import GateState
from certpoll._backends.urls import parse_backend_url
from tests.helpers import FakeTime

T0 = 1_000_000.0
#: One request per 10 s window, no margin, no pace: the simplest rules to read edges on.
ONE = GateRules(limits=((1, 10.0),), margin=0.0, lost_after=5.0, pace=False)
SPAN = 10.0 + EPSILON
#: Float rounding on an epoch-sized clock.
TOL = 1e-6


def admitted(state: GateState, now: float, rules: GateRules = ONE) -> Admitted:
    decision = state.admit(now, rules)
    assert isinstance(decision, Admitted), decision
    return decision


def waits(state: GateState, now: float, rules: GateRules = ONE) -> Wait:
    decision = state.admit(now, rules)
    assert isinstance(decision, Wait), decision
    return decision


# -- the windows --------------------------------------------------------------------------------


def test_a_hit_counts_until_its_answer_then_for_the_window_and_the_margin() -> None:
    rules = GateRules(limits=((2, 10.0),), margin=0.5, pace=False)
    span = 10.5 + EPSILON
    state = GateState()
    assert [admitted(state, T0, rules).ticket for _ in range(2)] == ["1", "2"]
    # Both outstanding: no answer yet can free a place sooner than a whole span.
    assert waits(state, T0 + 1.0, rules).seconds == pytest.approx(span, abs=TOL)
    state.report(T0 + 2.0, rules, Answer("1"))
    assert waits(state, T0 + 3.0, rules).seconds == pytest.approx(span - 1.0, abs=TOL)
    assert waits(state, T0 + 2.0 + span - 1e-4, rules).seconds == MIN_WAIT
    assert admitted(state, T0 + 2.0 + span + 1e-6, rules).ticket == "3"


def test_the_hit_that_frees_a_place_is_the_excess_th_oldest_still_counted() -> None:
    wide = GateRules(limits=((4, 10.0),), margin=0.0, pace=False)
    state = GateState()
    tickets = [admitted(state, T0, wide).ticket for _ in range(4)]
    for offset, ticket in enumerate(tickets):
        state.report(T0 + offset, wide, Answer(ticket))  # answered at T0, +1, +2, +3
    # At T0 + 10.5 the hit answered at T0 is out of the window, and not yet forgotten.
    now = T0 + 10.5
    assert admitted(state, now, wide).ticket == "5"
    assert state.answered == [T0, T0 + 1.0, T0 + 2.0, T0 + 3.0]
    # Under one request per window, counted 3 answered and 1 outstanding: excess 4, and no
    # answered hit can free enough places: a whole span.
    assert waits(state, now, ONE).seconds == pytest.approx(SPAN, abs=TOL)
    state.report(now, ONE, Answer("5"))
    # Counted 4 answered (+1, +2, +3, +10.5): excess 4, freed when the 4th oldest leaves.
    assert waits(state, now, ONE).seconds == pytest.approx(SPAN, abs=TOL)
    # Under two per window: excess 3, freed when the 3rd oldest (+3) leaves.
    two = GateRules(limits=((2, 10.0),), margin=0.0, pace=False)
    assert waits(state, now, two).seconds == pytest.approx(T0 + 3.0 + SPAN - now, abs=TOL)
    three = GateRules(limits=((3, 10.0),), margin=0.0, pace=False)
    assert waits(state, now, three).seconds == pytest.approx(T0 + 2.0 + SPAN - now, abs=TOL)


def test_every_window_is_enforced_at_once() -> None:
    rules = GateRules(limits=((3, 1.0), (1, 10.0)), margin=0.0, pace=False)
    state = GateState()
    state.report(T0, rules, Answer(admitted(state, T0, rules).ticket))
    assert waits(state, T0 + 2.0, rules).seconds == pytest.approx(SPAN - 2.0, abs=TOL)
    rules = GateRules(limits=((1, 10.0), (3, 1.0)), margin=0.0, pace=False)
    assert waits(state, T0 + 2.0, rules).seconds == pytest.approx(SPAN - 2.0, abs=TOL)


def test_a_wait_is_never_shorter_than_a_timers_resolution() -> None:
    state = GateState()
    state.report(T0, ONE, Answer(admitted(state, T0).ticket))
    assert waits(state, T0 + SPAN - MIN_WAIT / 10).seconds == MIN_WAIT
    assert waits(state, T0 + SPAN - 2 * MIN_WAIT).seconds == pytest.approx(2 * MIN_WAIT, abs=TOL)


def test_an_answer_for_no_outstanding_ticket_counts_nothing() -> None:
    state = GateState()
    state.report(T0, ONE, Answer("7"))
    state.report(T0, ONE, Answer(None))
    assert state.answered == []
    ticket = admitted(state, T0).ticket
    state.report(T0 + 1.0, ONE, Answer(ticket))
    state.report(T0 + 2.0, ONE, Answer(ticket))  # twice: counted once, from the first
    assert state.answered == [T0 + 1.0]
    assert state.outstanding == {}


# -- a hit never answered, and what is forgotten -----------------------------------------------


def test_a_hit_never_answered_counts_as_answered_lost_after_its_admission() -> None:
    state = GateState()
    admitted(state, T0)
    assert waits(state, T0 + 5.0).seconds == pytest.approx(SPAN, abs=TOL)  # still outstanding
    assert state.outstanding == {"1": T0}
    assert waits(state, T0 + 6.0).seconds == pytest.approx(SPAN - 1.0, abs=TOL)
    assert state.outstanding == {}
    assert state.answered == [T0 + 5.0]


def test_lost_hits_are_given_up_oldest_first_and_only_those() -> None:
    rules = GateRules(limits=((3, 10.0),), margin=0.0, lost_after=5.0, pace=False)
    state = GateState()
    admitted(state, T0, rules)
    admitted(state, T0 + 1.0, rules)
    admitted(state, T0 + 4.0, rules)
    admitted_later = waits(state, T0 + 6.5, rules)  # two lost, one still out
    assert state.outstanding == {"3": T0 + 4.0}
    assert state.answered == [T0 + 5.0, T0 + 6.0]
    assert admitted_later.seconds == pytest.approx(T0 + 5.0 + SPAN - (T0 + 6.5), abs=TOL)


def test_hits_no_window_counts_any_more_are_forgotten() -> None:
    rules = GateRules(limits=((5, 2.0), (5, 3.0)), margin=0.5, pace=False)
    state = GateState()
    for at in (T0, T0 + 0.5, T0 + 1.0):
        state.report(at, rules, Answer(admitted(state, at, rules).ticket))
    # The longest window and margin is 3.5 s, and one more second is kept: a hit answered
    # before now - 4.5 is forgotten; one answered at it is not.
    admitted(state, T0 + 5.0, rules)
    assert state.answered == [T0 + 0.5, T0 + 1.0]


def test_hits_are_forgotten_while_a_request_is_still_out() -> None:
    rules = GateRules(limits=((2, 10.0),), margin=0.0, lost_after=50.0, pace=False)
    state = GateState()
    state.report(T0, rules, Answer(admitted(state, T0, rules).ticket))
    admitted(state, T0 + 1.0, rules)  # out until T0 + 51
    admitted(state, T0 + 20.0, rules)
    assert state.answered == []
    assert list(state.outstanding) == ["2", "3"]


# -- the pace ----------------------------------------------------------------------------------


def test_the_pace_admits_half_the_fastest_window_then_one_per_spacing() -> None:
    rules = GateRules(limits=((100, 60.0), (10, 1.0)), margin=0.0)
    assert (rules.spacing, rules.burst) == (0.1, 5)
    state = GateState()
    for _ in range(5):
        admitted(state, T0, rules)
    assert waits(state, T0, rules).seconds == pytest.approx(0.1, abs=TOL)
    assert waits(state, T0 + 0.05, rules).seconds == pytest.approx(0.05, abs=TOL)
    admitted(state, T0 + 0.1, rules)
    assert waits(state, T0 + 0.1, rules).seconds == pytest.approx(0.1, abs=TOL)
    # Float dust of the schedule is no wait.
    admitted(state, T0 + 0.2 - EPSILON / 2, rules)


def test_float_dust_on_the_schedule_up_to_epsilon_is_no_wait() -> None:
    rules = GateRules(limits=((1, 2e-5),), margin=0.0)  # one per 2e-5 s, a burst of 1
    assert GateState(paced_at=2e-5).admit(1e-5, rules) == Admitted("1", probe=False)
    assert EPSILON == 2e-5 - 1e-5  # exactly at the edge
    assert GateState(paced_at=2e-5).admit(1e-5 - 1e-6, rules) == Wait(MIN_WAIT)


def test_a_lull_is_made_up_for_up_to_the_burst_and_no_more() -> None:
    rules = GateRules(limits=((10, 1.0),), margin=0.0)
    state = GateState()
    admitted(state, T0, rules)
    for _ in range(5):  # after a lull of 10 s: the whole burst, and not one more
        admitted(state, T0 + 10.0, rules)
    assert waits(state, T0 + 10.0, rules).seconds == pytest.approx(0.1, abs=TOL)
    assert state.paced_at == pytest.approx(T0 + 10.5)


@pytest.mark.parametrize(
    ("limits", "pace", "spacing", "burst"),
    [
        (((10, 1.0), (100, 60.0)), True, 0.1, 5),
        (((100, 60.0), (10, 1.0)), True, 0.1, 5),
        (((3, 1.0),), True, 1.0 / 3, 1),
        (((1, 2.0),), True, 2.0, 1),
        (((10, 1.0),), False, 0.0, 0),
        ((), True, 0.0, 0),
    ],
)
def test_the_spacing_and_the_burst_are_the_fastest_windows(
    limits: tuple[tuple[int, float], ...], pace: bool, spacing: float, burst: int
) -> None:
    rules = GateRules(limits=limits, pace=pace)
    assert rules.spacing == pytest.approx(spacing)
    assert rules.burst == burst


@pytest.mark.parametrize(
    ("limits", "margin", "longest"),
    [(((10, 1.0), (100, 60.0)), 0.5, 60.5), (((100, 60.0), (10, 1.0)), 0.0, 60.0), ((), 0.1, 0.1)],
)
def test_the_longest_a_hit_counts(
    limits: tuple[tuple[int, float], ...], margin: float, longest: float
) -> None:
    assert GateRules(limits=limits, margin=margin).longest == longest


# -- the hold and its probe -------------------------------------------------------------------


COOL = GateRules(limits=(), cooldowns=(5.0, 15.0, 45.0), lost_after=20.0, recheck=0.5)


def held(state: GateState, now: float, seconds: float | None = None) -> float:
    """A hold reported by no request (as ``UpstreamGate.hold``): the seconds it holds."""
    return state.report(now, COOL, Answer(None, hold=Hold(seconds)))


def probe_at(state: GateState, now: float) -> str:
    decision = admitted(state, now, COOL)
    assert decision.probe
    return decision.ticket


def test_an_open_key_is_held_nothing() -> None:
    state = GateState()
    assert state.report(T0, COOL, Answer(admitted(state, T0, COOL).ticket)) == 0.0
    assert admitted(state, T0, COOL).probe is False


def test_a_hold_holds_until_its_end_then_exactly_one_probe_goes() -> None:
    state = GateState()
    assert held(state, T0) == 5.0
    assert (state.cooling, state.strikes, state.not_before) == (True, 0, T0 + 5.0)
    assert waits(state, T0 + 1.0, COOL) == Wait(4.0)
    assert waits(state, T0 + 5.0 - MIN_WAIT / 2, COOL) == Wait(MIN_WAIT)
    ticket = probe_at(state, T0 + 5.0)
    assert (state.probe, state.probe_deadline) == (ticket, T0 + 25.0)
    assert waits(state, T0 + 6.0, COOL) == Wait(0.5, for_probe=True)
    # Held for the rest of the hold: none left, but the probe's answer is still to come.
    assert state.report(T0 + 6.0, COOL, Answer(None)) == 0.0


def test_a_good_probe_ends_the_cooldown() -> None:
    state = GateState()
    held(state, T0)
    ticket = probe_at(state, T0 + 5.0)
    assert state.report(T0 + 6.0, COOL, Answer(ticket)) == 0.0
    assert (state.cooling, state.strikes, state.not_before, state.probe) == (
        False,
        0,
        -math.inf,
        None,
    )
    assert admitted(state, T0 + 6.0, COOL).probe is False


def test_a_probe_held_again_extends_the_hold_growing_then_at_the_last_step() -> None:
    state = GateState()
    held(state, T0)
    now = T0 + 5.0
    holds = []
    for _ in range(3):
        ticket = probe_at(state, now)
        holds.append(state.report(now + 1.0, COOL, Answer(ticket, hold=Hold(None))))
        now = state.not_before
    assert holds == [15.0, 45.0, 45.0]
    assert state.strikes == 3
    # A probe held for its Retry-After: that long, and it still counts as a strike.
    ticket = probe_at(state, now)
    assert state.report(now, COOL, Answer(ticket, hold=Hold(2.0))) == 2.0
    assert state.strikes == 4


def test_an_inconclusive_probe_lets_the_next_request_probe() -> None:
    state = GateState()
    held(state, T0)
    ticket = probe_at(state, T0 + 5.0)
    assert state.report(T0 + 6.0, COOL, Answer(ticket, conclusive=False)) == 0.0
    assert (state.cooling, state.probe, state.strikes) == (True, None, 0)
    assert probe_at(state, T0 + 6.0) == "2"


def test_a_hold_by_another_request_during_a_cooldown_is_no_strike_and_never_shortens() -> None:
    state = GateState()
    held(state, T0)  # until + 5
    assert held(state, T0 + 1.0, 2.0) == 4.0  # ends at + 3: the hold stays until + 5
    assert held(state, T0 + 1.0, 10.0) == 10.0
    assert held(state, T0 + 1.0) == 10.0  # the first step again: until + 6, shorter
    assert (state.strikes, state.not_before) == (0, T0 + 11.0)


def test_a_hold_of_no_time_still_sends_a_probe_first() -> None:
    state = GateState()
    assert held(state, T0, 0.0) == 0.0
    assert state.cooling
    assert probe_at(state, T0) == "1"


def test_a_probe_never_answered_is_given_up_after_lost_after() -> None:
    state = GateState()
    held(state, T0)
    probe_at(state, T0 + 5.0)  # its deadline: + 25
    assert waits(state, T0 + 25.0, COOL) == Wait(0.5, for_probe=True)
    assert probe_at(state, T0 + 25.0 + 1e-6) == "2"


def test_a_report_on_an_old_probe_ticket_changes_nothing() -> None:
    state = GateState()
    held(state, T0)
    first = probe_at(state, T0 + 5.0)
    state.report(T0 + 6.0, COOL, Answer(first, conclusive=False))
    second = probe_at(state, T0 + 6.0)
    assert state.report(T0 + 7.0, COOL, Answer(first)) == 0.0  # no longer the probe
    assert (state.cooling, state.probe) == (True, second)


# -- the state as text -----------------------------------------------------------------------


_times = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
_states = st.builds(
    GateState,
    answered=st.lists(_times).map(sorted),
    outstanding=st.dictionaries(st.text(min_size=1), _times),
    paced_at=st.one_of(st.just(-math.inf), _times),
    cooling=st.booleans(),
    not_before=st.one_of(st.just(-math.inf), _times),
    strikes=st.integers(0, 100),
    probe=st.one_of(st.none(), st.text(min_size=1)),
    probe_deadline=st.one_of(st.just(-math.inf), _times),
    issued=st.integers(0, 10**9),
)


@given(_states)
def test_any_state_round_trips_through_what_is_stored(state: GateState) -> None:
    text, answered = state.dump()
    assert GateState.load(text, answered) == state
    json.loads(text, parse_constant=_refuse)  # PostgreSQL and JSON readers refuse Infinity


def _refuse(constant: str) -> float:
    raise AssertionError(f"{constant} is not JSON")


def test_the_text_of_a_new_state_is_compact_and_its_times_null() -> None:
    assert GateState().dump() == ("[[],null,false,null,0,null,null,0]", b"")


# -- the rules, the hold, the key, the backend and its errors ----------------------------------


def test_the_defaults() -> None:
    rules = GateRules()
    assert (rules.limits, rules.margin, rules.lost_after, rules.recheck, rules.pace) == (
        (),
        DEFAULT_MARGIN,
        DEFAULT_LOST_AFTER,
        DEFAULT_RECHECK,
        True,
    )
    assert (DEFAULT_MARGIN, DEFAULT_LOST_AFTER, DEFAULT_RECHECK) == (0.1, 60.0, 0.25)
    assert rules.cooldowns == (5.0, 15.0, 45.0, 135.0, 300.0)
    assert Hold().seconds is None
    assert Wait(1.0).for_probe is False


@pytest.mark.parametrize("name", ["margin", "lost_after", "recheck"])
@pytest.mark.parametrize("value", [-1e-9, math.inf, math.nan])
def test_a_setting_of_the_rules_that_is_no_time_is_refused_by_name(name: str, value: float) -> None:
    with pytest.raises(
        ConfigError, match=rf"^gate {name} must be a finite number of seconds >= 0$"
    ):
        GateRules(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["margin", "lost_after", "recheck"])
def test_a_setting_of_the_rules_may_be_zero(name: str) -> None:
    assert getattr(GateRules(**{name: 0.0}), name) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("cooldowns", [(), (5.0, -1.0), (math.inf,), (5.0, math.nan)])
def test_cooldowns_that_are_no_holds_are_refused(cooldowns: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match=r"^gate cooldowns must be one or more finite"):
        GateRules(cooldowns=cooldowns)


def test_a_cooldown_of_zero_is_a_hold() -> None:
    assert GateRules(cooldowns=(0.0, 1.0)).cooldown(0) == 0.0


@pytest.mark.parametrize(
    ("seconds", "kept"),
    [(None, None), (-3.0, 0.0), (math.nan, 0.0), (0.0, 0.0), (0.5, 0.5), (2.5, 2.5),
     (LONGEST_HOLD, LONGEST_HOLD), (LONGEST_HOLD + 1, LONGEST_HOLD), (math.inf, LONGEST_HOLD)],
)  # fmt: skip
def test_a_hold_is_between_no_wait_and_a_day(seconds: float | None, kept: float | None) -> None:
    assert Hold(seconds).seconds == kept
    assert LONGEST_HOLD == 86400.0


def test_the_key_of_an_account_never_changes() -> None:
    """Every process and version on one account must compute the same key: it is what a
    shared backend stores the state under."""
    digest = hmac.new(b"certpoll gate key v1", b"digicert\0secret", hashlib.sha256).hexdigest()
    assert gate_key("digicert", "secret") == f"certpoll:gate:digicert:{digest[:32]}"


def test_an_unreachable_backend_is_named_with_its_cause_and_without_its_password() -> None:
    url = parse_backend_url(
        "redis://user:hunter22@cache.example:6380/0", setting="S", allowed=GATE_SCHEMES
    )
    error = unreachable(url, OSError("hunter22 refused at cache.example"))
    assert isinstance(error, TransientError)
    assert str(error) == (
        "the shared gate at redis://user:***@cache.example:6380/0 is unavailable "
        "(OSError: *** refused at cache.example)"
    )
    plain = parse_backend_url("redis://cache.example/0", setting="S", allowed=GATE_SCHEMES)
    assert str(unreachable(plain, ConnectionError(""))) == (
        "the shared gate at redis://cache.example/0 is unavailable (ConnectionError: )"
    )


async def test_a_memory_backend_runs_on_the_clock_it_is_given() -> None:
    for url in ("memory://", "memory:///"):
        clock = FakeTime(now=T0)
        backend = open_gate_backend(url, clock=clock.clock)
        assert isinstance(backend, MemoryGate)
        assert await backend.admit("k", COOL) == Admitted("1", probe=False)
        assert await backend.report("k", COOL, Answer("1", hold=Hold(3.0))) == 3.0
        clock.now += 1.0
        assert await backend.admit("k", COOL) == Wait(2.0)
        clock.now += 2.0
        assert await backend.admit("k", COOL) == Admitted("2", probe=True)
        # Inconclusive: the cooldown goes on, and the next request is the probe.
        assert await backend.report("k", COOL, Answer("2", conclusive=False)) == 0.0
        assert await backend.admit("k", COOL) == Admitted("3", probe=True)
        # Held again by the rules' cooldown: its first strike.
        assert await backend.report("k", COOL, Answer("3", hold=Hold(None))) == 15.0
        clock.now += 15.0
        assert await backend.admit("k", COOL) == Admitted("4", probe=True)
        # An answer is conclusive unless said otherwise: this one ends the cooldown.
        assert await backend.report("k", COOL, Answer("4")) == 0.0
        assert await backend.admit("k", COOL) == Admitted("5", probe=False)
        await backend.report("k", COOL, Answer("5"))
        await backend.report("k", COOL, Answer(None, hold=Hold(None)))
        assert await backend.admit("k", COOL) == Wait(5.0)
        assert await backend.admit("k", COOL) == Wait(5.0)
        clock.now += 5.0
        assert await backend.admit("k", COOL) == Admitted("6", probe=True)
        assert await backend.report("k", COOL, Answer("6", conclusive=True)) == 0.0
        assert await backend.admit("k", COOL) == Admitted("7", probe=False)


@pytest.mark.parametrize(
    ("url", "kind", "name"),
    [
        ("sqlite:///{tmp}/gate.db", SQLiteGate, "sqlite:///{tmp}/gate.db"),
        ("redis://u:hunter22@cache.example/0", RedisGate, "redis://u:***@cache.example/0"),
        ("postgresql://u:hunter22@db.example/x", PostgresGate, "postgresql://u:***@db.example/x"),
    ],
)
async def test_a_shared_backend_is_opened_on_its_url_and_named_without_its_password(
    tmp_path: Path, url: str, kind: type[GateBackend], name: str
) -> None:
    backend = open_gate_backend(url.format(tmp=tmp_path))
    assert isinstance(backend, kind)
    assert backend.name == name.format(tmp=tmp_path)
    await backend.aclose()  # nothing was connected


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("redis://u:hunter22@cache/0", "redis", "redis"),
        ("postgresql://db/x", "asyncpg", "postgres"),
    ],
)
def test_a_missing_client_library_is_named_with_its_setting_and_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    shown = url.replace("hunter22", "***")
    with pytest.raises(ConfigError) as caught:
        open_gate_backend(url)
    assert str(caught.value) == (
        f"gate_url {shown} needs the {module} client: pip install 'certpoll[{extra}]'"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(ConfigError, match=r"^CERTPOLL_X_GATE_URL "):
        open_gate_backend(url, setting="CERTPOLL_X_GATE_URL")


def test_a_bad_url_names_the_default_setting() -> None:
    with pytest.raises(ConfigError, match=r"^gate_url must be a URL"):
        open_gate_backend("mysql://h/db")
