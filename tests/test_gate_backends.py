"""The gate's backends: the same rules on memory, SQLite, Redis and PostgreSQL.

Redis and PostgreSQL are the real servers of tests/realservers.py, and they keep time by
their own clock, which no test can move: their tests wait for real, so their windows are
short (0.2 s). Memory and SQLite take a clock, so they run on :class:`FakeTime` and the same
tests cost no real time.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certpoll import (
    Admitted,
    Answer,
    ConfigError,
    GateBackend,
    GateRules,
    Hold,
    TransientError,
    Wait,
    gate_key,
    open_gate_backend,
)
from certpoll._backends.gate import GATE_SCHEMES
from certpoll._backends.gate_memory import MemoryGate
from certpoll._backends.gate_postgres import PostgresGate
from certpoll._backends.gate_redis import RedisGate
from certpoll._backends.gate_sqlite import SQLiteGate
from certpoll._backends.gate_state import GateState, SteppedGate
from certpoll._backends.urls import parse_backend_url
from tests.helpers import DIGICERT_API_KEY, FakeTime

KEY = gate_key("digicert", DIGICERT_API_KEY)
WINDOW = 0.2
#: A small margin keeps the real-time tests short; the default is 0.1 s.
RULES = GateRules(limits=((3, WINDOW),), margin=0.05, lost_after=0.5, pace=False)
SPAN = WINDOW + RULES.margin
#: Float rounding on an epoch-sized clock, and the rules' own safe-side slack.
TOL = 1e-4


@dataclass
class Rig:
    """Backends on one shared state (as separate processes would have), and a way to wait."""

    make: Callable[[], GateBackend]
    sleep: Callable[[float], Awaitable[object]]
    #: The clock the backend keeps, as far as a test can read it (the host's monotonic
    #: clock for a server: same rate): a wait is checked against the time that passed.
    clock: Callable[[], float]

    def start(self) -> float:
        return self.clock()

    def assert_wait(self, wait: Wait, seconds: float, since: float) -> None:
        """``wait`` is what remains of ``seconds`` counted from ``since``, however loaded the
        machine was in between."""
        elapsed = self.clock() - since
        assert seconds - elapsed - TOL <= wait.seconds <= seconds + TOL, (wait, elapsed)

    async def admitted(self, backend: GateBackend, rules: GateRules = RULES) -> Admitted:
        decision = await backend.admit(KEY, rules)
        assert isinstance(decision, Admitted), decision
        return decision

    async def waits(self, backend: GateBackend, rules: GateRules = RULES) -> Wait:
        decision = await backend.admit(KEY, rules)
        assert isinstance(decision, Wait), decision
        return decision

    async def admit_after_waits(self, backend: GateBackend, rules: GateRules = RULES) -> Admitted:
        for _ in range(100):
            decision = await backend.admit(KEY, rules)
            if isinstance(decision, Admitted):
                return decision
            await self.sleep(decision.seconds)
        raise AssertionError("never admitted")


BACKENDS = ["memory", "sqlite", "redis", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend's URL; the real servers' fixtures are resolved here, outside any loop."""
    kind: str = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/gate.db"
    if kind == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    url = request.getfixturevalue("fresh_postgres_url")
    return str(url)


@pytest.fixture(params=["redis", "postgresql"])
def server_url(request: pytest.FixtureRequest) -> str:
    """The URL of a backend on a real server with a clock of its own."""
    url: str = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "fresh_postgres_url"
    )
    return url


async def _flush_redis(url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def rig(backend_url: str) -> AsyncIterator[Rig]:
    made: list[GateBackend] = []
    fake = FakeTime(now=1_000_000.0)
    shared_memory = MemoryGate(clock=fake.clock)
    virtual = backend_url.startswith(("memory:", "sqlite:"))

    def make() -> GateBackend:
        # One backend object per "client", as separate processes would have; in memory
        # there is only one process, so every client shares the one state.
        backend: GateBackend
        if backend_url == "memory://":
            backend = shared_memory
        elif backend_url.startswith("sqlite:"):
            url = parse_backend_url(backend_url, setting="gate_url", allowed=GATE_SCHEMES)
            backend = SQLiteGate(url, clock=fake.clock)
        else:
            backend = open_gate_backend(backend_url)
        made.append(backend)
        return backend

    yield Rig(make, fake.sleep, fake.clock) if virtual else Rig(make, asyncio.sleep, time.monotonic)
    for backend in made:
        await backend.aclose()
    if backend_url.startswith("redis:"):
        await _flush_redis(backend_url)


# -- the rules, on every backend -------------------------------------------------------------


async def test_windows_admit_the_limit_then_wait_until_the_answer_plus_the_window(
    rig: Rig,
) -> None:
    gate = rig.make()
    tickets = [await rig.admitted(gate) for _ in range(3)]
    assert len({t.ticket for t in tickets}) == 3
    assert not any(t.probe for t in tickets)
    # Unanswered, the hits count however long it takes: at least the whole span from now.
    assert (await rig.waits(gate)).seconds >= SPAN - 0.01
    await rig.sleep(WINDOW)
    await rig.waits(gate)
    answered = rig.start()
    for ticket in tickets:
        await gate.report(KEY, RULES, Answer(ticket.ticket))
    # From the answer, not from the admission (which would leave 0.2 s less).
    rig.assert_wait(await rig.waits(gate), SPAN, answered)
    wait = await rig.waits(gate)
    await rig.sleep(wait.seconds)
    await rig.admitted(gate)


async def test_a_hit_never_answered_counts_until_admission_plus_lost_after(rig: Rig) -> None:
    gate = rig.make()
    for _ in range(3):
        await rig.admitted(gate)  # and then the process died
    await rig.sleep(RULES.lost_after - 0.1)
    await rig.waits(gate)
    await rig.sleep(0.1 + SPAN + 0.01)
    await rig.admitted(gate)


async def test_pacing_lets_half_the_fastest_window_go_at_once_then_spaces_the_rest(
    rig: Rig,
) -> None:
    rules = GateRules(limits=((4, WINDOW), (5, 0.5)), margin=0.05)
    assert rules.spacing == pytest.approx(0.05)
    assert rules.burst == 2
    gate = rig.make()
    started = rig.start()
    for _ in range(2):
        await rig.admitted(gate, rules)  # the burst: at once
    decision = await gate.admit(KEY, rules)
    if isinstance(decision, Admitted):
        # Real time ran past the spacing since the burst (a loaded machine): the next
        # token was due, and that is all the gate may say.
        assert rig.clock() - started >= rules.spacing - TOL
    else:
        rig.assert_wait(decision, rules.spacing, started)
        await rig.sleep(decision.seconds)
        await rig.admitted(gate, rules)
    decision = await gate.admit(KEY, rules)
    # The one after is at most a spacing away (or due already, on a slow machine).
    assert isinstance(decision, Admitted) or decision.seconds <= rules.spacing + TOL


def test_a_lull_is_made_up_for_up_to_the_burst() -> None:
    from certpoll._backends.gate_state import GateState

    rules = GateRules(limits=((10, 1.0),), margin=0.0)
    state = GateState()
    assert rules.burst == 5
    times: list[float] = []
    now = 0.0
    while len(times) < 8:
        decision = state.admit(now, rules)
        if isinstance(decision, Wait):
            now += decision.seconds
            continue
        times.append(now)
        state.report(now, rules, Answer(decision.ticket))
    # Five at once, then one per 0.1 s.
    assert times[:5] == [0.0] * 5
    assert times[5:] == pytest.approx([0.1, 0.2, 0.3], abs=2e-3)
    # After a lull of 2 s (the window empty again): the burst at once, never beyond it.
    now += 2.0
    at_once = 0
    while isinstance(state.admit(now, rules), Admitted):
        at_once += 1
    assert at_once == 5


async def test_a_hold_holds_every_client_then_exactly_one_probe_goes(rig: Rig) -> None:
    first, second = rig.make(), rig.make()
    for client in (first, second):  # connected before the clock matters: a report of nothing
        assert await client.report(KEY, RULES, Answer(None)) == 0.0
    sent = await rig.admitted(first)
    holding = rig.start()
    await first.report(KEY, RULES, Answer(sent.ticket, hold=Hold(0.1)))
    held = await rig.waits(second)
    rig.assert_wait(held, 0.1, holding)
    assert not held.for_probe
    await rig.sleep(held.seconds)
    probe = await rig.admitted(second)
    assert probe.probe
    for client in (first, second):
        waiting = await rig.waits(client)
        assert waiting.for_probe
        assert waiting.seconds == RULES.recheck
    # The probe's answer is fine: the cooldown ends for everyone.
    await second.report(KEY, RULES, Answer(probe.ticket))
    after = await rig.admitted(first)
    assert not after.probe


async def test_a_rate_limited_probe_extends_the_hold_growing(rig: Rig) -> None:
    rules = GateRules(limits=((50, WINDOW),), margin=0.05, cooldowns=(0.1, 0.3))
    gate = rig.make()
    holding = rig.start()
    await gate.report(KEY, rules, Answer(None, hold=Hold(None)))
    first = await rig.waits(gate, rules)
    rig.assert_wait(first, 0.1, holding)
    await rig.sleep(first.seconds)
    probe = await rig.admitted(gate, rules)
    assert probe.probe
    holding = rig.start()
    await gate.report(KEY, rules, Answer(probe.ticket, hold=Hold(None)))  # 429 again
    second = await rig.waits(gate, rules)
    rig.assert_wait(second, 0.3, holding)  # 0.1 × 3
    await rig.sleep(second.seconds)
    again = await rig.admitted(gate, rules)
    assert again.probe
    # An inconclusive answer (the request failed on our side) does not end the cooldown:
    # the next request probes instead.
    await gate.report(KEY, rules, Answer(again.ticket, conclusive=False))
    assert (await rig.admit_after_waits(gate, rules)).probe


async def test_a_probe_whose_process_died_is_given_up(rig: Rig) -> None:
    rules = GateRules(limits=((50, WINDOW),), margin=0.05, lost_after=0.3)
    dead, alive = rig.make(), rig.make()
    await dead.report(KEY, rules, Answer(None, hold=Hold(0.0)))
    assert (await rig.admitted(dead, rules)).probe  # and then its process is killed
    assert (await rig.waits(alive, rules)).for_probe
    await rig.sleep(rules.lost_after + 0.02)
    assert (await rig.admitted(alive, rules)).probe


async def test_simultaneous_admissions_from_many_clients_admit_exactly_the_limit(
    rig: Rig,
) -> None:
    clients = [rig.make() for _ in range(4)]
    decisions = await asyncio.gather(*(c.admit(KEY, RULES) for c in clients for _ in range(6)))
    admitted = [d for d in decisions if isinstance(d, Admitted)]
    assert len(admitted) == 3
    assert len({d.ticket for d in admitted}) == 3


async def test_keys_are_independent(rig: Rig) -> None:
    gate = rig.make()
    other = gate_key("digicert", "another-api-key")
    for _ in range(3):
        await rig.admitted(gate)
    assert isinstance(await gate.admit(other, RULES), Admitted)


# -- the window rule, as a property --------------------------------------------------------


@given(
    limits=st.lists(
        st.tuples(st.integers(1, 6), st.sampled_from([0.5, 1.0, 2.5])), min_size=1, max_size=2
    ),
    latencies=st.lists(
        st.tuples(st.floats(0.0, 0.4), st.floats(0.0, 0.4), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    gaps=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=60),
    margin=st.sampled_from([0.0, 0.1]),
    pace=st.booleans(),
)
def test_no_window_of_the_ca_ever_holds_more_than_its_limit(
    limits: list[tuple[int, float]],
    latencies: list[tuple[float, float, bool]],
    gaps: list[float],
    margin: float,
    pace: bool,
) -> None:
    """Whatever the latency to the CA and back, and answers that never come, the CA's count
    of arrivals in any of its windows stays within the limit."""
    from certpoll._backends.gate_state import GateState

    rules = GateRules(limits=tuple(limits), margin=margin, lost_after=1.0, pace=pace)
    state = GateState()
    now = 0.0
    arrivals: list[float] = []
    answers: list[tuple[float, str]] = []  # (time the answer is reported, ticket)
    for index, (to_ca, back, lost) in enumerate(latencies):
        now += gaps[index % len(gaps)]
        for when, ticket in sorted(a for a in answers if a[0] <= now):
            state.report(when, rules, Answer(ticket))
        answers = [a for a in answers if a[0] > now]
        decision = state.admit(now, rules)
        while isinstance(decision, Wait):
            now += decision.seconds
            for when, ticket in sorted(a for a in answers if a[0] <= now):
                state.report(when, rules, Answer(ticket))
            answers = [a for a in answers if a[0] > now]
            decision = state.admit(now, rules)
        # A lost request still reaches the CA, before lost_after has passed.
        arrivals.append(now + min(to_ca, rules.lost_after * 0.99))
        if not lost:
            answers.append((now + to_ca + back, decision.ticket))
    arrivals.sort()
    for requests, seconds in limits:
        for end, t in enumerate(arrivals):
            inside = [a for a in arrivals[: end + 1] if a >= t - seconds]  # closed window
            assert len(inside) <= requests


@given(st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40))
def test_an_idle_gate_admits_at_once_and_a_full_one_says_how_long(gaps: list[float]) -> None:
    """Liveness: after the wait it names, a request is admitted (nothing waits forever)."""
    from certpoll._backends.gate_state import GateState

    rules = GateRules(limits=((2, 1.0),), margin=0.1)
    state = GateState()
    now = 0.0
    for gap in gaps:
        now += gap
        decision = state.admit(now, rules)
        if isinstance(decision, Wait):
            assert 0 < decision.seconds <= 1.0 + 0.1 + 1e-3
            now += decision.seconds
            decision = state.admit(now, rules)
        assert isinstance(decision, Admitted)
        state.report(now, rules, Answer(decision.ticket))


def test_state_round_trips_through_its_row() -> None:
    from certpoll._backends.gate_state import GateState

    state = GateState()
    assert GateState.load(*state.dump()) == state
    first = state.admit(10.0, RULES)
    assert isinstance(first, Admitted)
    state.report(10.5, RULES, Answer(first.ticket, hold=Hold(None)))
    second = state.admit(20.0, RULES)
    assert isinstance(second, Admitted)
    assert second.probe
    assert GateState.load(*state.dump()) == state  # cooling, a probe out
    state.report(20.5, RULES, Answer(second.ticket))
    assert isinstance(state.admit(20.6, RULES), Admitted)
    assert (state.answered, list(state.outstanding.values())) == ([20.5], [20.6])
    assert GateState.load(*state.dump()) == state
    assert "Infinity" not in GateState().dump()[0]  # JSON readers refuse it


# -- the key, the URL, and a backend that is not there ----------------------------------------


@given(st.text(min_size=1), st.text(min_size=1))
def test_the_key_is_a_keyed_hash_of_the_credential(first: str, second: str) -> None:
    key = gate_key("digicert", first)
    assert key.startswith("certpoll:gate:digicert:")
    assert key == gate_key("digicert", first)
    assert first not in key.removeprefix("certpoll:gate:digicert:") or len(first) < 3
    assert (key == gate_key("digicert", second)) == (first == second)
    assert key != gate_key("sectigo", first)


def test_the_key_never_holds_the_credential() -> None:
    assert DIGICERT_API_KEY not in KEY


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryGate),
        ("sqlite:///gate.db", SQLiteGate),
        ("redis://localhost:6379/0", RedisGate),
        ("postgresql://u:p@localhost/db", PostgresGate),
    ],
)
def test_the_url_picks_the_backend(url: str, kind: type[object]) -> None:
    backend = open_gate_backend(url)
    assert isinstance(backend, kind)
    assert ":p@" not in repr(backend)


def test_a_bad_url_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="CERTPOLL_DIGICERT_GATE_URL"):
        open_gate_backend("mysql://x/y", setting="CERTPOLL_DIGICERT_GATE_URL")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


PASSWORD = "gate-SECRET-password-4e1b"


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:{_closed_port()}/0",
        f"postgresql://certpoll:{PASSWORD}@127.0.0.1:{_closed_port()}/postgres",
        "sqlite:////nonexistent-dir/certpoll/gate.db",
    ],
)
async def test_an_unreachable_backend_is_a_transient_error_without_the_password(url: str) -> None:
    backend = open_gate_backend(url)
    with pytest.raises(TransientError, match=r"shared gate at .* is unavailable") as caught:
        await backend.admit(KEY, RULES)
    with pytest.raises(TransientError):
        await backend.report(KEY, RULES, Answer("1"))
    await backend.aclose()
    assert caught.value.__cause__ is not None
    for error in _chain(caught.value):
        assert PASSWORD not in f"{error} {error!r} {vars(error)!r}"
    assert PASSWORD not in repr(backend)


# -- time is the server's -------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-0.5, 0.5, 3600.0])
async def test_a_clients_clock_is_never_read(
    server_url: str, skew: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica whose wall clock is off admits and waits exactly as the others do."""
    url = server_url
    key = gate_key("digicert", f"skew-{skew}")
    steady, skewed = open_gate_backend(url), open_gate_backend(url)
    real_time = time.time
    try:
        for _ in range(2):
            assert isinstance(await steady.admit(key, RULES), Admitted)
        monkeypatch.setattr(time, "time", lambda: real_time() + skew)
        assert isinstance(await skewed.admit(key, RULES), Admitted)
        wait = await skewed.admit(key, RULES)
        assert isinstance(wait, Wait)
        assert SPAN * 0.5 < wait.seconds <= SPAN + 0.01
    finally:
        monkeypatch.undo()
        await steady.aclose()
        await skewed.aclose()


# -- the measurement: 0 429s at the documented limits, with latency and jitter ----------------


def test_rules_are_checked() -> None:
    with pytest.raises(ConfigError, match="margin"):
        GateRules(margin=-1.0)
    with pytest.raises(ConfigError, match="lost_after"):
        GateRules(lost_after=math.inf)
    assert Hold(-3.0).seconds == 0.0
    assert Hold(math.nan).seconds == 0.0
    assert Hold(math.inf).seconds == 86400.0
    assert Hold(None).seconds is None
    rules = GateRules(cooldowns=(5.0, 15.0))
    assert [rules.cooldown(strikes) for strikes in range(4)] == [5.0, 15.0, 15.0, 15.0]
    with pytest.raises(ConfigError, match="cooldowns"):
        GateRules(cooldowns=())


# -- Lua and Python: one set of rules -------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.just(("admit", 0, "")),
        st.tuples(
            st.just("report"),
            st.integers(0, 7),
            st.sampled_from(["answer", "429", "retry-after", "retry-now", "inconclusive"]),
        ),
        st.tuples(st.just("hold"), st.just(0), st.sampled_from(["cooldown", "seconds", "now"])),
    ),
    max_size=25,
)


async def _decisions(backend: GateBackend, key: str, ops: list[tuple[str, int, str]]) -> list[str]:
    """What ``backend`` answers to ``ops``, all within a few milliseconds: no window or hold
    (10 s and more) can end in between, a hold of 0 s has ended by the next step, so every
    backend must answer alike, probes included."""
    rules = GateRules(limits=((3, 10.0), (5, 30.0)), cooldowns=(10.0, 30.0), pace=False)
    tickets: list[str] = []
    seen: list[str] = []
    for op, index, how in ops:
        if op == "admit":
            decision = await backend.admit(key, rules)
            if isinstance(decision, Admitted):
                tickets.append(decision.ticket)
                seen.append(f"admitted probe={decision.probe}")
            else:
                seen.append(f"wait for_probe={decision.for_probe}")
        elif op == "report" and tickets:
            ticket = tickets[index % len(tickets)]
            hold = {"429": Hold(None), "retry-after": Hold(20.0), "retry-now": Hold(0.0)}.get(how)
            held_for = await backend.report(
                key, rules, Answer(ticket, conclusive=how != "inconclusive", hold=hold)
            )
            seen.append(f"held={held_for > 1.0}")
        elif op == "hold":
            hold = {"cooldown": Hold(None), "seconds": Hold(15.0)}.get(how, Hold(0.0))
            held_for = await backend.report(key, rules, Answer(None, hold=hold))
            seen.append(f"held={held_for > 1.0}")
    return seen


@given(ops=_OPS)
def test_redis_lua_and_postgresql_plpgsql_decide_as_the_python_rules(
    redis_url: str, postgres_url: str, ops: list[tuple[str, int, str]]
) -> None:
    async def run() -> list[list[str]]:
        key = gate_key("digicert", f"twins-{uuid.uuid4()}")
        twins = [open_gate_backend(redis_url), open_gate_backend(postgres_url)]
        try:
            return [await _decisions(gate, key, ops) for gate in [MemoryGate(), *twins]]
        finally:
            for gate in twins:
                await gate.aclose()

    expected, lua, plpgsql = asyncio.run(run())
    assert lua == expected
    assert plpgsql == expected


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'certpoll\[postgres\]'") as caught:
        open_gate_backend("postgresql://u:hunter2@db/x")
    assert "hunter2" not in str(caught.value)


async def test_a_failed_step_changes_nothing_and_holds_no_lock(rig: Rig) -> None:
    gate = rig.make()
    if not isinstance(gate, SteppedGate):
        # Its step is one Lua script or one PL/pgSQL call: no caller code inside.
        assert isinstance(gate, RedisGate | PostgresGate)
        return

    def fail(state: GateState, now: float) -> None:
        state.admit(now, RULES)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await gate.step(KEY, fail)
    if isinstance(gate, MemoryGate):
        return  # in memory, a step is the caller's code: nothing to roll back
    for _ in range(3):  # all three places are still free: the failed admission was undone
        await rig.admitted(rig.make())


async def test_a_file_that_is_no_database_is_a_transient_error(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    path.write_bytes(b"not a database, " * 100)
    backend = open_gate_backend(f"sqlite:///{path}")
    with pytest.raises(TransientError, match="unavailable"):
        await backend.admit(KEY, RULES)
    await backend.aclose()
