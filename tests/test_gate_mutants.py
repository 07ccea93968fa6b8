"""The gate's edges: what tests/test_gate.py checks by shape, checked exactly.

Written against the survivors of ``make mutate`` (docs/testing-internals.md): the loop clock
starts far from 0, so a time measured from the wrong origin shows; a request cancelled just
as it became the head of the queue, or while it waits behind the head, leaves the queue
working; holds shorter than a second hold; a refusal says when and why.
"""

from __future__ import annotations

import asyncio

import pytest

from certpoll import GateClosed
from certpoll._gate import UpstreamGate
from certpoll._poller import CLOCK_SLACK
from tests.helpers import FakeTime

#: Every clock here starts at this time: waits must not depend on it.
START = 1_000_000.0

pytestmark = pytest.mark.looptime(start=START)


def now() -> float:
    return asyncio.get_running_loop().time()


def later_gate() -> UpstreamGate:
    clock = FakeTime(now=START)
    return UpstreamGate(clock=clock.clock, sleep=clock.sleep)


# -- holds and how long until the gate opens ----------------------------------------------------


async def test_an_open_gate_opens_in_zero_seconds() -> None:
    gate = later_gate()
    assert gate.opens_in() == 0.0
    assert gate.cooling_down is False


@pytest.mark.parametrize("seconds", [0.5, 10.0])
async def test_a_hold_of_any_length_holds_that_long(seconds: float) -> None:
    gate = later_gate()
    gate.hold(seconds)
    assert gate.opens_in() == pytest.approx(seconds)
    assert gate.cooling_down is True


async def test_a_sub_second_hold_admits_the_probe_when_it_ends() -> None:
    gate = UpstreamGate()
    gate.hold(0.25)
    async with gate.admit() as admission:
        assert admission.probe
        assert now() == pytest.approx(START + 0.25)


async def test_after_a_good_probe_the_gate_is_open_again() -> None:
    gate = UpstreamGate()
    gate.hold(2.0)
    async with gate.admit():
        pass
    assert gate.cooling_down is False
    assert gate.opens_in() == 0.0


# -- what a refusal says ---------------------------------------------------------------------


async def test_a_refusal_known_at_once_says_when_the_gate_opens() -> None:
    gate = later_gate()
    gate.hold(5.0)
    with pytest.raises(GateClosed) as closed:
        async with gate.admit(deadline=START + 2.0):
            pytest.fail("admitted during the hold")
    assert str(closed.value) == (
        "the connector's gate (rate limits, a CA's Retry-After) cannot admit a request before "
        "its deadline (in 2.000 s); it opens in about 5.000 s"
    )
    assert closed.value.retry_after == pytest.approx(5.0)


@pytest.mark.parametrize("seconds", [0.0, 0.3])
async def test_a_refusal_for_a_deadline_now_says_now(seconds: float) -> None:
    gate = later_gate()
    gate.hold(0.3)
    with pytest.raises(GateClosed, match=r"before its deadline \(now\); it opens in about 0.300 s"):
        async with gate.admit(deadline=START - seconds):
            pytest.fail("admitted during the hold")


async def test_a_wait_for_the_probes_answer_ends_at_the_deadline() -> None:
    gate = UpstreamGate()
    gate.hold(1.0)
    answered = asyncio.Event()

    async def slow_probe() -> None:
        async with gate.admit():
            await answered.wait()

    probe = asyncio.create_task(slow_probe())
    await asyncio.sleep(1.5)  # the probe is out, its answer not in
    asked = now()
    with pytest.raises(GateClosed) as closed:
        async with gate.admit(deadline=asked + 0.5):
            pytest.fail("admitted while the probe is out")
    assert now() - asked == pytest.approx(0.5, abs=0.01)
    assert closed.value.retry_after == 0.0  # it opens when the probe answers: not known
    answered.set()
    await probe


# -- cancelled waiters -----------------------------------------------------------------------


async def admit_at(gate: UpstreamGate, log: list[tuple[str, float]], name: str) -> None:
    async with gate.admit():
        log.append((name, now()))


def since_start(log: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Who was admitted, and when, in seconds from the start, to the millisecond."""
    return [(name, round(at - START, 3)) for name, at in log]


@pytest.mark.parametrize("follower", [True, False])
async def test_a_head_cancelled_before_it_runs_hands_its_turn_on(follower: bool) -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    tasks: dict[str, asyncio.Task[None]] = {}

    async def first_then_cancel_next() -> None:
        async with gate.admit():
            log.append(("a", now()))
            # B was made the head as A left the queue, and has not run yet.
            tasks["b"].cancel()

    await admit_at(gate, log, "x")  # fills the window: the next request waits 1 s
    tasks["a"] = asyncio.create_task(first_then_cancel_next())
    tasks["b"] = asyncio.create_task(admit_at(gate, log, "b"))
    if follower:
        tasks["c"] = asyncio.create_task(admit_at(gate, log, "c"))
    async with asyncio.timeout(60):
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert tasks["b"].cancelled()
    expected = [("x", 0.0), ("a", 1.0), ("c", 2.0)] if follower else [("x", 0.0), ("a", 1.0)]
    assert since_start(log) == expected
    assert gate.waiting == 0
    # The gate still serves whoever comes next, at once.
    await asyncio.sleep(5.0)
    async with asyncio.timeout(60):
        await admit_at(gate, log, "d")
    assert log[-1] == ("d", now())


async def test_a_waiter_cancelled_behind_the_head_leaves_one_head() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    await admit_at(gate, log, "x")
    head = asyncio.create_task(admit_at(gate, log, "a"))
    behind = asyncio.create_task(admit_at(gate, log, "b"))
    last = asyncio.create_task(admit_at(gate, log, "c"))
    await asyncio.sleep(0.5)  # A is the head and sleeps; B and C queue
    behind.cancel()
    await asyncio.sleep(0)
    assert behind.cancelled()
    assert gate.waiting >= 2  # A and C still wait (a cancelled waiter leaves lazily)
    await asyncio.gather(head, last)
    assert since_start(log) == [("x", 0.0), ("a", 1.0), ("c", 2.0)]
    assert gate.waiting == 0


async def test_a_head_whose_window_frees_at_its_deadline_within_the_slack_gets_in() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    await admit_at(gate, log, "x")
    # The window frees at START + 1, which is the deadline plus exactly CLOCK_SLACK.
    async with gate.admit(deadline=START + 1.0 - CLOCK_SLACK):
        log.append(("a", now()))
    assert since_start(log) == [("x", 0.0), ("a", 1.0)]


async def test_a_head_refused_by_its_deadline_says_how_far_the_deadline_was() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    await admit_at(gate, log, "x")
    first = asyncio.create_task(admit_at(gate, log, "a"))  # the head: in at START + 1
    await asyncio.sleep(0)
    # At arrival the window frees at START + 1, before the deadline; behind A it frees at
    # START + 2, after it: known once this request is the head, at START + 1.
    with pytest.raises(GateClosed) as closed:
        async with gate.admit(deadline=START + 1.5):
            pytest.fail("admitted past the deadline")
    assert now() == START + 1.0
    assert "before its deadline (in 0.500 s); it opens in about 1.000 s" in str(closed.value)
    await first


async def test_a_hold_ends_within_the_slack() -> None:
    clock = FakeTime(now=START)
    gate = UpstreamGate(clock=clock.clock, sleep=clock.sleep)
    gate.hold(1.0)
    clock.now = START + 1.0 - CLOCK_SLACK  # the end of the hold, less the slack
    async with gate.admit() as admission:
        assert admission.probe is True
    assert clock.sleeps == []


async def test_an_ordinary_admission_is_no_probe_and_holds_nothing() -> None:
    gate = UpstreamGate()
    async with gate.admit() as admission:
        assert admission.probe is False
        assert admission.held is False


async def test_a_window_that_frees_within_the_slack_admits_at_once() -> None:
    clock = FakeTime(now=START)
    gate = UpstreamGate(rate_limits=[(1, 1.0)], clock=clock.clock, sleep=clock.sleep)
    async with gate.admit():
        pass
    clock.now = START + 1.0 - CLOCK_SLACK / 2
    async with gate.admit():
        pass
    assert clock.sleeps == []
    assert gate.requests_sent == 2
