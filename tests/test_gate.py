"""The upstream gate: sliding-window rate limits, the shared cooldown and its single probe.

Everything runs in virtual time (``looptime``): the loop clock starts at 0 and sleeps cost
no real time.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certpoll import (
    AttemptTimeout,
    BackoffPolicy,
    ConfigError,
    DigiCert,
    DigiCertSettings,
    Done,
    Failed,
    GateClosed,
    OrderState,
    Pending,
    PermanentError,
    Poller,
    RateLimited,
    StillPending,
    TransientError,
)
from certpoll._backends.gate import GateBackend
from certpoll._backends.gate_memory import MemoryGate
from certpoll._backends.gate_sqlite import SQLiteGate
from certpoll._backends.gate_state import GateState, SteppedGate
from certpoll._gate import UpstreamGate
from certpoll._poller import attempt_clock_paused, attempt_deadline
from tests.helpers import DIGICERT_API_KEY, FakeTime, run_in_virtual_time

pytestmark = pytest.mark.looptime

T = TypeVar("T")


def now() -> float:
    return asyncio.get_running_loop().time()


def max_in_window(times: list[float], seconds: float) -> int:
    """The most of ``times`` inside any window ``seconds`` long (less the gate's 1 ms slack)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - seconds + 1e-3:
            start += 1
        best = max(best, end - start + 1)
    return best


async def send(gate: UpstreamGate, log: list[tuple[int, float]], tag: int) -> None:
    async with gate.admit():
        log.append((tag, now()))


# -- rate limits ----------------------------------------------------------------------------


async def test_no_limits_admits_at_once() -> None:
    gate = UpstreamGate()
    log: list[tuple[int, float]] = []
    await asyncio.gather(*(send(gate, log, i) for i in range(500)))
    assert [t for _, t in log] == [0.0] * 500
    assert gate.requests_sent == 500
    assert gate.waiting == 0


async def test_every_window_is_honoured_in_arrival_order() -> None:
    gate = UpstreamGate(rate_limits=[(10, 1.0), (25, 5.0)])
    log: list[tuple[int, float]] = []
    await asyncio.gather(*(send(gate, log, i) for i in range(300)))
    times = [t for _, t in log]
    assert [tag for tag, _ in log] == list(range(300))  # FIFO
    assert max_in_window(times, 1.0) == 10
    assert max_in_window(times, 5.0) == 25
    # Half of the fastest window at once, then paced at its rate (one per 0.1 s); each
    # request counts for its window plus the 0.1 s margin. Tight, not just safe: within
    # 3 % of the 57 s that bursts right at each window's edge would take.
    assert times[:5] == [0.0] * 5
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(times[4:10]))
    assert 57.0 < times[-1] < 57.0 * 1.03


async def test_digicert_default_limits_sustain_800_per_three_minutes() -> None:
    gate = UpstreamGate(rate_limits=[(80, 5.0), (800, 180.0)])
    log: list[tuple[int, float]] = []
    await asyncio.gather(*(send(gate, log, i) for i in range(2000)))
    times = [t for _, t in log]
    assert max_in_window(times, 5.0) <= 80
    assert max_in_window(times, 180.0) <= 800
    # 800 paced over 50 s from 0, again from 180.1 s, and the last 400 from 360.2 s: within
    # 2 % of the 380 s that bursts of 80 at each window's edge would take.
    assert 380.0 < times[-1] < 380.0 * 1.02


async def test_injected_clock_and_sleep() -> None:
    fake = FakeTime()
    gate = UpstreamGate(rate_limits=[(1, 10.0)], clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        async with gate.admit():
            pass
    assert fake.sleeps == [pytest.approx(10.1, abs=1e-4)] * 2  # the window and the margin
    assert now() == 0  # the loop's clock never moved


@pytest.mark.parametrize(
    "limits",
    [[(0, 5.0)], [(5, 0.0)], [(5, -1.0)], [(5, math.inf)], [(5,)], [("5", 5.0)], [(True, 5.0)]],
)
def test_bad_rate_limits_are_config_errors(limits: list[tuple[int, float]]) -> None:
    with pytest.raises(ConfigError, match="rate limit"):
        UpstreamGate(rate_limits=limits)


async def test_cancelled_waiters_leave_the_queue_without_blocking_it() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[int, float]] = []
    tasks = [asyncio.create_task(send(gate, log, i)) for i in range(6)]
    await asyncio.sleep(0)  # 0 is admitted, 1 is the head (sleeping), 2-5 queue
    tasks[1].cancel()  # the head
    tasks[3].cancel()  # one in the middle
    await asyncio.gather(*tasks, return_exceptions=True)
    assert [tag for tag, _ in log] == [0, 2, 4, 5]
    assert [t for _, t in log] == pytest.approx([0.0, 1.1, 2.2, 3.3], abs=5e-3)
    assert gate.waiting == 0


async def test_a_waiter_cancelled_right_after_becoming_head_hands_the_turn_on() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[int, float]] = []
    first = asyncio.create_task(send(gate, log, 0))
    await asyncio.sleep(0)
    head = asyncio.create_task(send(gate, log, 1))
    second = asyncio.create_task(send(gate, log, 2))
    await asyncio.sleep(0)
    third = asyncio.create_task(send(gate, log, 3))
    await asyncio.sleep(0)
    # 2 and 3 wait on futures; finish the head's wait and cancel 2 in the same tick.
    await head
    second.cancel()
    await asyncio.gather(first, second, third, return_exceptions=True)
    assert [tag for tag, _ in log] == [0, 1, 3]
    assert gate.waiting == 0


# -- the shared cooldown --------------------------------------------------------------------


async def test_a_hold_stops_everyone_then_one_probe_goes_first() -> None:
    gate = UpstreamGate()
    events: list[tuple[str, int, float]] = []

    async def request(tag: int, *, rate_limited: bool = False, work: float = 0.0) -> None:
        async with gate.admit() as admission:
            events.append(("sent", tag, now()))
            await asyncio.sleep(work)
            if rate_limited:
                admission.hold(60.0, rate_limited=True)

    await request(0, rate_limited=True)
    assert gate.cooling_down
    # Ten requests arrive during the hold; the first through is the probe, and it takes 2 s.
    await asyncio.sleep(10)
    await asyncio.gather(request(1, work=2.0), *(request(i) for i in range(2, 11)))
    sent = [(tag, t) for kind, tag, t in events if kind == "sent"]
    assert sent[0] == (0, 0.0)
    assert sent[1] == (1, 60.0)  # the probe, alone
    assert all(t == 62.0 for _, t in sent[2:])  # the rest once it answered
    assert not gate.cooling_down
    assert gate.rate_limited == 1
    assert gate.holds == 1


async def test_a_rate_limited_probe_extends_the_hold() -> None:
    gate = UpstreamGate()
    sent: list[float] = []
    storm_until = 200.0

    async def request() -> None:
        async with gate.admit() as admission:
            sent.append(now())
            if now() < storm_until:
                admission.hold(60.0, rate_limited=True)

    await asyncio.gather(*(request() for _ in range(50)))
    # The first 429 at 0; probes at 60, 120, 180 (429 again); at 240 the probe gets through.
    assert sent[:5] == [0.0, 60.0, 120.0, 180.0, 240.0]
    assert sent[5:] == [240.0] * 45
    assert gate.rate_limited == 4


async def test_a_429_without_retry_after_holds_for_a_growing_cooldown() -> None:
    gate = UpstreamGate()
    sent: list[float] = []

    async def request(rate_limited: bool) -> None:
        async with gate.admit() as admission:
            sent.append(now())
            if rate_limited:
                admission.observe(Pending(RateLimited("429", ca="digicert", status_code=429)))

    for _ in range(5):
        await request(True)
    assert sent == [0.0, 5.0, 20.0, 65.0, 125.0]  # holds of 5, 15, 45, 60 s
    await request(True)
    assert sent[-1] == 185.0  # 60: the cap
    await request(False)
    assert sent[-1] == 245.0
    assert not gate.cooling_down
    await request(True)  # a new storm starts from 5 s again
    await request(False)
    assert sent[-2:] == [245.0, 250.0]


async def test_stragglers_extend_but_do_not_escalate_the_cooldown() -> None:
    gate = UpstreamGate()
    release = asyncio.Event()
    sent: list[float] = []

    async def in_flight() -> None:
        async with gate.admit() as admission:
            await release.wait()
            admission.hold(None, rate_limited=True)

    stragglers = [asyncio.create_task(in_flight()) for _ in range(20)]
    await asyncio.sleep(0)
    await gate.hold()  # the first 429: 5 s
    await asyncio.sleep(1)
    release.set()  # twenty more 429s from requests sent before the hold
    await asyncio.gather(*stragglers)
    async with gate.admit():
        sent.append(now())
    assert sent == [6.0]  # 1 s + 5 s, not 1 s + 15 s or more
    assert gate.rate_limited == 20
    assert gate.holds == 21


async def test_a_probe_that_fails_to_answer_lets_the_next_one_probe() -> None:
    gate = UpstreamGate()
    await gate.hold(30.0)
    sent: list[tuple[int, float]] = []

    async def broken_probe() -> None:
        async with gate.admit():
            sent.append((0, now()))
            await asyncio.sleep(1)
            raise OSError("connection reset")

    async def request(tag: int) -> None:
        async with gate.admit():
            sent.append((tag, now()))
            await asyncio.sleep(1)

    results = await asyncio.gather(
        broken_probe(), *(request(i) for i in (1, 2, 3)), return_exceptions=True
    )
    assert isinstance(results[0], OSError)
    assert sent == [(0, 30.0), (1, 31.0), (2, 32.0), (3, 32.0)]


async def test_a_cancelled_waiter_does_not_break_the_probe_wait() -> None:
    gate = UpstreamGate()
    await gate.hold(10.0)
    sent: list[int] = []

    async def request(tag: int, work: float) -> None:
        async with gate.admit():
            sent.append(tag)
            await asyncio.sleep(work)

    probe = asyncio.create_task(request(0, 5.0))
    waiter = asyncio.create_task(request(1, 0.0))
    later = asyncio.create_task(request(2, 0.0))
    await asyncio.sleep(12)  # probe out; 1 waits for its answer, 2 queues behind
    waiter.cancel()
    await asyncio.gather(probe, waiter, later, return_exceptions=True)
    assert sent == [0, 2]
    assert now() == 15.0


async def test_observe_holds_only_for_rate_limits_and_retry_after_on_errors() -> None:
    gate = UpstreamGate()
    not_held: list[Pending | Failed | None] = [
        None,
        Failed(PermanentError("400", ca="digicert")),
        Pending(detail="still working", retry_after=30.0),  # an order's own hint
        Pending(TransientError("503", ca="digicert", status_code=503)),
    ]
    for outcome in not_held:
        async with gate.admit() as admission:
            admission.observe(outcome)
        assert not gate.cooling_down, outcome
    async with gate.admit() as admission:
        admission.observe(Pending(TransientError("503", ca="digicert"), retry_after=7.0))
    assert gate.cooling_down
    assert gate.rate_limited == 0
    async with gate.admit():
        assert now() == 7.0


async def test_negative_or_nan_hold_means_probe_at_once() -> None:
    gate = UpstreamGate()
    await gate.hold(-5.0)
    await gate.hold(math.nan)
    async with gate.admit() as admission:
        assert admission.probe
        assert now() == 0.0
    assert not gate.cooling_down


async def test_share_cooldown_false_holds_nobody() -> None:
    gate = UpstreamGate(share_cooldown=False)
    async with gate.admit() as admission:
        admission.hold(60.0, rate_limited=True)
    async with gate.admit() as admission:
        assert not admission.probe
    assert now() == 0.0
    assert gate.rate_limited == 1


def test_repr_shows_the_limits() -> None:
    assert repr(UpstreamGate(rate_limits=[(80, 5)])) == (
        "UpstreamGate(rate_limits=((80, 5.0),), backend='memory://')"
    )


# -- the attempt clock ----------------------------------------------------------------------


async def test_time_queued_at_the_gate_does_not_count_against_attempt_timeout() -> None:
    gate = UpstreamGate(rate_limits=[(1, 10.0)])
    poller = Poller(BackoffPolicy(jitter=0), max_wait=600, attempt_timeout=2.0, hooks=())

    async def attempt() -> Done[float] | Pending:
        async with gate.admit():
            await asyncio.sleep(1.5)  # the CA's own time: counts
        return Done(now())

    outcomes = await asyncio.gather(*(poller.poll(attempt) for _ in range(20)))
    finished = sorted(o.value for o in outcomes if isinstance(o, Done))
    # Each request counts from its admission until its answer 1.5 s later, then for the
    # window and the margin: 11.6 s apart; 220 s queued in all, and none timed out.
    assert finished == pytest.approx([11.6 * i + 1.5 for i in range(20)], abs=1e-3)


async def test_the_attempt_clock_resumes_after_the_gate() -> None:
    gate = UpstreamGate(rate_limits=[(1, 10.0)])
    poller = Poller(BackoffPolicy(jitter=0), max_wait=600, attempt_timeout=2.0, hooks=())
    calls = 0

    async def attempt() -> Done[float] | Pending:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1.5)  # before the gate: counts
        async with gate.admit():  # queued 10 s behind the other poll: does not
            await asyncio.sleep(1.0 if calls < 3 else 0.0)  # 1.5 + 1.0 > 2: times out
        return Done(now())

    async def other() -> Done[float]:
        async with gate.admit():
            pass
        return Done(now())

    results = await asyncio.gather(poller.poll(attempt), poller.poll(other))
    assert results[1] == Done(0.0)
    assert isinstance(results[0], Done)
    assert calls == 3  # two attempts cut off by attempt_timeout, then done


async def test_attempt_clock_paused_outside_an_attempt_does_nothing() -> None:
    with attempt_clock_paused():
        await asyncio.sleep(1)
    poller = Poller(max_wait=10, attempt_timeout=math.inf, hooks=())

    async def attempt() -> Done[None]:
        with attempt_clock_paused():  # no timeout to pause
            await asyncio.sleep(1)
        return Done(None)

    assert await poller.poll(attempt) == Done(None)


async def test_attempt_clock_paused_in_a_child_task_leaves_the_attempt_alone() -> None:
    poller = Poller(max_wait=10, attempt_timeout=1.0, hooks=())

    async def child() -> None:
        with attempt_clock_paused():
            await asyncio.sleep(5)

    async def attempt() -> Done[None]:
        await asyncio.create_task(child())
        return Done(None)

    outcome = await poller.poll(attempt)
    assert not isinstance(outcome, Done)
    assert isinstance(outcome.last_error, AttemptTimeout)


# -- deadlines: nothing queues past its poll's deadline ---------------------------------------


async def admitted_at(gate: UpstreamGate, deadline: float | None) -> float:
    async with gate.admit(deadline=deadline):
        return now()


async def test_a_hold_past_the_deadline_is_refused_at_once_with_when_it_opens() -> None:
    gate = UpstreamGate()
    await gate.hold(3600.0)
    with pytest.raises(GateClosed) as closed:
        await admitted_at(gate, deadline=60.0)
    assert now() == 0.0  # known at once: no queueing
    assert closed.value.retry_after == pytest.approx(3600.0)
    assert closed.value.status_code is None
    assert gate.requests_sent == 0
    # Without a deadline (a revoke, a submit), the request waits the hold out.
    assert await admitted_at(gate, deadline=None) == 3600.0


async def test_a_rate_limit_wait_past_the_deadline_is_refused_and_the_next_one_goes() -> None:
    gate = UpstreamGate(rate_limits=[(1, 10.0)])
    assert await admitted_at(gate, deadline=5.0) == 0.0
    with pytest.raises(GateClosed) as closed:
        await admitted_at(gate, deadline=5.0)
    # The first request counts until its answer, then for the window and the margin.
    assert closed.value.retry_after == pytest.approx(10.1, abs=1e-3)
    assert await admitted_at(gate, deadline=15.0) == pytest.approx(10.1, abs=1e-3)


async def test_a_queued_request_leaves_at_its_deadline_and_the_queue_moves_on() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[int, float]] = []
    ahead = [asyncio.create_task(send(gate, log, i)) for i in range(10)]
    await asyncio.sleep(0)
    with pytest.raises(GateClosed):
        await admitted_at(gate, deadline=3.5)
    assert 3.5 <= now() <= 3.5 + 2e-3
    await asyncio.gather(*ahead)
    # One per window and margin (1.1 s), give or take a timer's resolution.
    assert [tag for tag, _ in log] == list(range(10))
    assert [t for _, t in log] == pytest.approx([1.1 * i for i in range(10)], abs=0.02)
    assert gate.waiting == 0


async def test_a_request_waiting_for_the_probes_answer_leaves_at_its_deadline() -> None:
    gate = UpstreamGate()
    await gate.hold(5.0)
    answered = asyncio.Event()

    async def slow_probe() -> None:
        async with gate.admit() as admission:
            assert admission.probe
            await answered.wait()

    probe = asyncio.create_task(slow_probe())
    await asyncio.sleep(5.0)
    with pytest.raises(GateClosed):
        await admitted_at(gate, deadline=7.0)
    assert 7.0 <= now() <= 7.0 + 2e-3
    answered.set()
    await probe
    assert await admitted_at(gate, deadline=now()) == now()


async def test_a_deadline_already_past_admits_only_an_open_gate() -> None:
    gate = UpstreamGate(rate_limits=[(4, 1.0)])  # a burst of 2, then one per 0.25 s
    assert await admitted_at(gate, deadline=-1.0) == 0.0
    assert await admitted_at(gate, deadline=-1.0) == 0.0
    with pytest.raises(GateClosed):
        await admitted_at(gate, deadline=0.0)


@settings(max_examples=60)
@given(
    limit=st.tuples(st.integers(1, 5), st.sampled_from([0.5, 1.0, 3.0])),
    hold=st.none() | st.floats(0.0, 20.0),
    plan=st.lists(
        st.tuples(st.floats(0.0, 10.0), st.none() | st.floats(0.0, 30.0)), min_size=1, max_size=40
    ),
)
def test_every_request_is_admitted_or_refused_by_its_deadline(
    limit: tuple[int, float], hold: float | None, plan: list[tuple[float, float | None]]
) -> None:
    """Whatever arrives when, with whatever deadline: no request is admitted after its
    deadline or refused later than it, the windows hold, and admission stays in order.
    """

    async def scenario() -> None:
        gate = UpstreamGate(rate_limits=[limit])
        if hold is not None:
            await gate.hold(hold)
        admitted: list[tuple[float, int]] = []

        async def request(index: int, arrival: float, patience: float | None) -> None:
            await asyncio.sleep(arrival)
            deadline = None if patience is None else arrival + patience
            try:
                async with gate.admit(deadline=deadline):
                    admitted.append((now(), index))
            except GateClosed:
                assert deadline is not None
                assert now() <= deadline + 2e-3
            else:
                assert deadline is None or now() <= deadline + 2e-3

        await asyncio.gather(*(request(i, a, p) for i, (a, p) in enumerate(plan)))
        times = [t for t, _ in admitted]
        assert max_in_window(times, limit[1]) <= limit[0]
        arrivals = [plan[index][0] for _, index in admitted]
        assert arrivals == sorted(arrivals)  # first come, first served
        if hold is not None:
            assert all(t >= hold - 2e-3 for t in times)
        assert gate.waiting == 0

    run_in_virtual_time(scenario())


@settings(max_examples=40)
@given(
    limit=st.tuples(st.integers(1, 4), st.sampled_from([1.0, 5.0])),
    hold=st.none() | st.floats(0.0, 500.0),
    polls=st.lists(
        st.tuples(
            st.floats(0.0, 30.0),  # start
            st.floats(1.0, 120.0),  # max_wait
            st.floats(1.0, 30.0),  # attempt_timeout
            st.floats(0.0, 40.0),  # the CA's latency
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_no_poll_outlives_max_wait_plus_attempt_timeout_whatever_the_gate_does(
    limit: tuple[int, float],
    hold: float | None,
    polls: list[tuple[float, float, float, float]],
) -> None:
    """Many polls through one gate (rate limits, a hold, slow answers): each returns by
    ``start + max_wait + attempt_timeout``, and one that never got through says why.
    """

    async def scenario() -> None:
        gate = UpstreamGate(rate_limits=[limit])
        if hold is not None:
            await gate.hold(hold)

        async def one(start: float, max_wait: float, bound: float, latency: float) -> None:
            await asyncio.sleep(start)

            async def attempt() -> Pending:
                try:
                    async with gate.admit(deadline=attempt_deadline()):
                        await asyncio.sleep(latency)
                except GateClosed as closed:
                    return Pending(closed, closed.retry_after)
                return Pending()

            poller = Poller(
                BackoffPolicy(initial_wait=2.0), max_wait=max_wait, attempt_timeout=bound
            )
            outcome: Done[None] | StillPending = await poller.poll(attempt)
            assert isinstance(outcome, StillPending)
            assert now() <= start + max_wait + bound + 2e-3

        await asyncio.gather(*(one(*poll) for poll in polls))
        assert gate.waiting == 0

    run_in_virtual_time(scenario())


# -- the fast path: memory:// with nobody queued -----------------------------------------------


class SteppedMemory(SteppedGate):
    """``memory://``'s state, but every step a coroutine: the gate's general path."""

    name = "stepped-memory://"

    def __init__(self) -> None:
        self._states: dict[str, GateState] = {}

    async def step(self, key: str, decide: Callable[[GateState, float], T]) -> T:
        return decide(self._states.setdefault(key, GateState()), now())

    async def aclose(self) -> None:
        return None


#: What a request does once admitted: answer after ``latency`` with one of these.
ANSWERS = ("ok", "429", "429 retry-after", "503 retry-after", "broken", "cancelled")


@settings(max_examples=60, deadline=None)
@given(
    limits=st.lists(
        st.tuples(st.integers(1, 6), st.sampled_from([0.5, 1.0, 4.0])), min_size=0, max_size=2
    ),
    pace=st.booleans(),
    margin=st.sampled_from([0.0, 0.1]),
    hold_at=st.none() | st.floats(0.0, 5.0),
    plan=st.lists(
        st.tuples(
            st.floats(0.0, 20.0),  # arrival
            st.none() | st.floats(0.0, 30.0),  # patience until the deadline
            st.sampled_from([0.0, 0.05, 0.5, 3.0]),  # latency
            st.sampled_from(ANSWERS),
            st.floats(0.0, 40.0),  # Retry-After
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_the_fast_path_decides_as_the_general_path_does(
    limits: list[tuple[int, float]],
    pace: bool,
    margin: float,
    hold_at: float | None,
    plan: list[tuple[float, float | None, float, str, float]],
) -> None:
    """The same arrivals, answers and holds through ``memory://`` (a request that finds
    nobody queued is admitted and reported by plain calls) and through the same state behind
    coroutines (the general path): every request is admitted at the same time with the same
    ticket and probe flag, or refused alike, and the gate ends in the same state.
    """

    async def scenario(backend: GateBackend) -> list[object]:
        gate = UpstreamGate(rate_limits=limits, pace=pace, margin=margin, backend=backend)
        seen: list[object] = []

        async def holder(at: float) -> None:
            await asyncio.sleep(at)
            await gate.hold(None)
            seen.append(("hold", now(), gate.opens_in()))

        async def request(index: int, arrival: float, patience: float | None) -> None:
            _, _, latency, answer, retry_after = plan[index]
            await asyncio.sleep(arrival)
            deadline = None if patience is None else arrival + patience
            try:
                async with gate.admit(deadline=deadline) as admission:
                    seen.append((index, now(), admission.ticket, admission.probe))
                    await asyncio.sleep(latency)
                    if answer == "cancelled":
                        raise asyncio.CancelledError
                    if answer == "broken":
                        raise OSError("connection reset")
                    if answer == "429":
                        admission.hold(None, rate_limited=True)
                    elif answer == "429 retry-after":
                        admission.hold(retry_after, rate_limited=True)
                    elif answer == "503 retry-after":
                        admission.hold(retry_after)
            except GateClosed as closed:
                seen.append((index, now(), "closed", round(closed.retry_after or 0.0, 6)))
            except (OSError, asyncio.CancelledError) as exc:
                seen.append((index, now(), type(exc).__name__))
            seen.append((index, "after", gate.cooling_down, round(gate.opens_in(), 6)))

        tasks = [request(i, arrival, patience) for i, (arrival, patience, *_) in enumerate(plan)]
        if hold_at is not None:
            tasks.append(holder(hold_at))
        await asyncio.gather(*tasks)
        assert gate.waiting == 0
        seen.append((gate.requests_sent, gate.rate_limited, gate.holds, gate.cooling_down))
        return seen

    fast = run_in_virtual_time(scenario(MemoryGate()))
    general = run_in_virtual_time(scenario(SteppedMemory()))
    assert fast == general


# -- gate_url: the gate's state shared by every process on the credential -------------------


def _digicert(tmp_gate: str, api_key: str = DIGICERT_API_KEY, **extra: object) -> DigiCert:
    settings = DigiCertSettings(
        api_key=api_key,
        org_id=4242,
        base_url="https://dc.invalid/services/v2",
        gate_url=tmp_gate,
        **extra,  # type: ignore[arg-type]
    )
    fake = FakeTime()
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
    poller = Poller(BackoffPolicy(jitter=0), max_wait=10.0, clock=fake.clock, sleep=fake.sleep)
    return DigiCert(settings, http=http, poller=poller)


@pytest.mark.looptime(False)
async def test_connectors_on_one_credential_share_one_gate_through_sqlite(
    tmp_path: Path,
) -> None:
    """Two connectors (as two processes would have) on one SQLite file and one API key: a
    hold seen by one holds the other; another credential's gate is its own."""
    url = f"sqlite:///{tmp_path}/gate.db"
    first, second, stranger = _digicert(url), _digicert(url), _digicert(url, "another-key")
    try:
        assert isinstance(first.gate.backend, SQLiteGate)
        await first.gate.hold(30.0)
        with pytest.raises(GateClosed) as closed:
            async with second.gate.admit(deadline=second.gate.now()):
                pass
        assert 29.0 < (closed.value.retry_after or 0) <= 30.0
        async with stranger.gate.admit(deadline=stranger.gate.now()):
            pass
    finally:
        for connector in (first, second, stranger):
            await connector.http.aclose()
            await connector.aclose()


@pytest.mark.looptime(False)
async def test_an_unreachable_shared_gate_is_a_transient_error_and_nothing_is_sent() -> None:
    password = "gate-SECRET-pw-0d9e"
    sent: list[httpx.Request] = []
    settings = DigiCertSettings(
        api_key=DIGICERT_API_KEY,
        org_id=4242,
        base_url="https://dc.invalid/services/v2",
        gate_url=f"redis://:{password}@127.0.0.1:{_closed_port()}/0",
    )
    fake = FakeTime()

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(transport=transport) as http:
        poller = Poller(BackoffPolicy(jitter=0), max_wait=10.0, clock=fake.clock, sleep=fake.sleep)
        async with DigiCert(settings, http=http, poller=poller) as dc:
            status = await dc.get_order_status("1001")
    assert status.state is OrderState.PENDING
    assert isinstance(status.last_error, TransientError)
    assert "shared gate at redis://:***@127.0.0.1" in str(status.last_error)
    assert password not in f"{status!r} {status.last_error!r}"
    assert sent == []  # never a silent fall-back to an unshared gate


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("prefix", ["CERTPOLL_", "CERTCTL_"])
def test_gate_url_from_the_environment(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{prefix}DIGICERT_GATE_URL", "redis://cache.internal:6379/2")
    settings = DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    assert settings.gate_url == "redis://cache.internal:6379/2"
    assert DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, gate_url="memory://").gate_url


def test_a_bad_gate_url_is_a_config_error_naming_the_variable_without_the_password() -> None:
    with pytest.raises(ConfigError, match="CERTPOLL_DIGICERT_GATE_URL") as caught:
        DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, gate_url="mysql://u:hunter2@db/x")
    assert "hunter2" not in str(caught.value)


def test_the_default_gate_is_this_process_memory() -> None:
    dc = _digicert("memory://")
    assert isinstance(dc.gate.backend, MemoryGate)
    assert DIGICERT_API_KEY not in repr(dc.gate)
