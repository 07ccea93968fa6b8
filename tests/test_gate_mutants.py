"""The gate's edges: what tests/test_gate.py checks by shape, checked exactly.

Written against the survivors of ``make mutate`` (docs/testing-internals.md): the loop clock
starts far from 0, so a time measured from the wrong origin shows; a request cancelled just
as it became the head of the queue, or while it waits behind the head, leaves the queue
working; holds shorter than a second hold; the deadline's slack has two edges; a refusal
says when and why; a probe's good answer reopens the gate; every setting the gate hands its
backend (margin, lost_after, cooldown, pace, key, clock) changes what it admits; a
connector's gate is keyed by its CA and its whole credential.

The gate here runs on its default backend (``memory://``), which takes the gate's clock: the
loop's virtual time (looptime), or a :class:`~tests.helpers.FakeTime` handed to the gate.
With ``rate_limits=[(1, 1.0)]`` a request counts until its answer, then for the window and
the 0.1 s margin: the next one goes 1.1 s after the previous one's answer.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from certpoll import (
    BackoffPolicy,
    ConfigError,
    DigiCertSettings,
    GateClosed,
    Pending,
    RateLimited,
    SectigoSettings,
    TransientError,
)
from certpoll._backends.gate import gate_key
from certpoll._backends.gate_memory import MemoryGate
from certpoll._gate import DEFAULT_COOLDOWN, UpstreamGate, connector_gate
from certpoll._poller import CLOCK_SLACK
from tests.helpers import DIGICERT_API_KEY, SECTIGO_LOGIN, SECTIGO_PASSWORD, FakeTime

#: Every clock here starts at this time: waits must not depend on it.
START = 1_000_000.0

pytestmark = pytest.mark.looptime(start=START)


def now() -> float:
    return asyncio.get_running_loop().time()


def fake_time_gate(*, cooldown: BackoffPolicy = DEFAULT_COOLDOWN) -> tuple[UpstreamGate, FakeTime]:
    """A gate (and its backend) on a clock that only moves when the gate sleeps."""
    clock = FakeTime(now=START)
    return UpstreamGate(clock=clock.clock, sleep=clock.sleep, cooldown=cooldown), clock


# -- holds and how long until the gate opens ----------------------------------------------------


async def test_an_open_gate_opens_in_zero_seconds() -> None:
    gate, _ = fake_time_gate()
    assert gate.opens_in() == 0.0
    assert gate.cooling_down is False


@pytest.mark.parametrize("seconds", [0.5, 10.0])
async def test_a_hold_of_any_length_holds_that_long(seconds: float) -> None:
    gate, _ = fake_time_gate()
    await gate.hold(seconds)
    assert gate.opens_in() == pytest.approx(seconds)
    assert gate.cooling_down is True


async def test_a_sub_second_hold_admits_the_probe_when_it_ends() -> None:
    gate = UpstreamGate()
    await gate.hold(0.25)
    async with gate.admit() as admission:
        assert admission.probe
        assert now() == pytest.approx(START + 0.25)


async def test_after_a_good_probe_the_gate_is_open_again() -> None:
    gate = UpstreamGate()
    await gate.hold(2.0)
    async with gate.admit() as admission:
        assert admission.probe
        assert gate.cooling_down is True  # until the probe's answer is in
    assert gate.cooling_down is False
    assert gate.opens_in() == 0.0
    async with gate.admit() as admission:
        assert admission.probe is False
        assert now() == pytest.approx(START + 2.0)


async def test_a_probe_held_again_keeps_the_gate_closed() -> None:
    gate = UpstreamGate()
    await gate.hold(2.0)
    async with gate.admit() as admission:
        admission.hold(3.0, rate_limited=True)
        assert admission.held is True
    assert gate.cooling_down is True
    assert gate.opens_in() == pytest.approx(3.0)
    async with gate.admit() as admission:
        assert admission.probe
        assert now() == pytest.approx(START + 5.0)


async def test_an_ordinary_admission_is_no_probe_and_holds_nothing() -> None:
    gate = UpstreamGate()
    async with gate.admit() as admission:
        assert admission.probe is False
        assert admission.held is False
    assert gate.cooling_down is False


# -- what a refusal says ---------------------------------------------------------------------


async def test_a_refusal_known_at_once_says_when_the_gate_opens() -> None:
    gate, clock = fake_time_gate()
    await gate.hold(5.0)
    with pytest.raises(GateClosed) as closed:
        async with gate.admit(deadline=START + 2.0):
            pytest.fail("admitted during the hold")
    assert str(closed.value) == (
        "the connector's gate (rate limits, a CA's Retry-After) cannot admit a request before "
        "its deadline (in 2.000 s); it opens in about 5.000 s"
    )
    assert closed.value.retry_after == pytest.approx(5.0)
    assert clock.sleeps == []  # known at once
    assert gate.requests_sent == 0


@pytest.mark.parametrize("seconds", [0.0, 0.3])
async def test_a_refusal_for_a_deadline_now_says_now(seconds: float) -> None:
    gate, _ = fake_time_gate()
    await gate.hold(0.3)
    with pytest.raises(GateClosed, match=r"before its deadline \(now\); it opens in about 0.300 s"):
        async with gate.admit(deadline=START - seconds):
            pytest.fail("admitted during the hold")


async def test_a_wait_for_the_probes_answer_ends_at_the_deadline() -> None:
    gate = UpstreamGate()
    await gate.hold(1.0)
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
    assert now() - asked == pytest.approx(0.5, abs=2 * CLOCK_SLACK)
    assert closed.value.retry_after == 0.0  # it opens when the probe answers: not known
    answered.set()
    await probe
    async with gate.admit(deadline=now()) as admission:
        assert admission.probe is False


# -- the deadline's slack: both edges ----------------------------------------------------------


@pytest.mark.parametrize("slack", [CLOCK_SLACK / 2, CLOCK_SLACK])
async def test_a_wait_that_ends_within_the_slack_after_the_deadline_is_waited_out(
    slack: float,
) -> None:
    gate, clock = fake_time_gate()
    await gate.hold(1.0)
    # The hold ends at the deadline plus ``slack``: exactly CLOCK_SLACK is still within.
    async with gate.admit(deadline=START + 1.0 - slack) as admission:
        assert admission.probe
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_a_wait_that_ends_past_the_slack_after_the_deadline_is_refused_at_once() -> None:
    gate, clock = fake_time_gate()
    await gate.hold(1.0)
    with pytest.raises(GateClosed, match=r"it opens in about 1.000 s"):
        async with gate.admit(deadline=START + 1.0 - 3 * CLOCK_SLACK / 2):
            pytest.fail("admitted past the deadline")
    assert clock.sleeps == []


@pytest.mark.parametrize(("slack", "queues"), [(0.5, True), (1.0, True), (1.5, False)])
async def test_a_request_behind_the_head_queues_only_if_the_gate_opens_within_the_slack(
    slack: float, queues: bool
) -> None:
    """Behind a head, what the gate already knows (when it opens) decides at arrival; a gate
    that opens exactly CLOCK_SLACK after the deadline is still within it."""
    gate = UpstreamGate()
    await gate.hold(1.0)
    answered = asyncio.Event()

    async def slow_probe() -> None:
        async with gate.admit() as admission:
            assert admission.probe
            await answered.wait()

    async def behind_the_head() -> None:
        async with gate.admit(deadline=START + 1.0 - slack * CLOCK_SLACK):
            pytest.fail("admitted while the probe is out")

    head = asyncio.create_task(slow_probe())
    await asyncio.sleep(0)  # the head sleeps out the hold
    behind = asyncio.create_task(behind_the_head())
    await asyncio.sleep(0)
    assert behind.done() is not queues
    if not queues:
        assert isinstance(behind.exception(), GateClosed)
        assert now() == START
    # Queued, it becomes the head after the probe went, and waits for its answer: that
    # answer does not come by the deadline.
    with pytest.raises(GateClosed):
        await behind
    assert now() <= START + 1.0 + CLOCK_SLACK
    answered.set()
    await head
    assert gate.waiting == 0


# -- rate limits: order and deadlines ------------------------------------------------------------


async def admit_at(gate: UpstreamGate, log: list[tuple[str, float]], name: str) -> None:
    async with gate.admit():
        log.append((name, now()))


def assert_admitted(log: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    """Who was admitted, in order, and when, in seconds from the start (to a timer's
    resolution)."""
    assert [name for name, _ in log] == [name for name, _ in expected]
    assert [at - START for _, at in log] == pytest.approx([at for _, at in expected], abs=5e-3)


async def test_a_request_arriving_as_the_heads_wait_ends_queues_behind_it() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    await admit_at(gate, log, "x")  # the next request waits 1.1 s

    async def arrive_at_the_end_of_the_wait() -> None:
        await asyncio.sleep(1.1)
        await admit_at(gate, log, "b")

    head = asyncio.create_task(admit_at(gate, log, "a"))
    await asyncio.sleep(0)
    await asyncio.gather(head, arrive_at_the_end_of_the_wait())
    assert_admitted(log, [("x", 0.0), ("a", 1.1), ("b", 2.2)])


async def test_a_waiter_made_head_keeps_a_newcomer_behind_it() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    await admit_at(gate, log, "x")
    tasks = [asyncio.create_task(admit_at(gate, log, name)) for name in "ab"]
    await asyncio.sleep(1.5)  # A went at + 1.1; B, made the head, waits until + 2.2
    tasks.append(asyncio.create_task(admit_at(gate, log, "c")))
    await asyncio.sleep(0)
    assert gate.waiting == 2  # B at the head, C queued behind it: one head only
    await asyncio.gather(*tasks)
    assert_admitted(log, [("x", 0.0), ("a", 1.1), ("b", 2.2), ("c", 3.3)])


async def test_a_head_refused_by_its_deadline_says_how_far_the_deadline_was() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    log: list[tuple[str, float]] = []
    await admit_at(gate, log, "x")
    first = asyncio.create_task(admit_at(gate, log, "a"))  # the head: in at START + 1.1
    await asyncio.sleep(0)
    # At arrival the gate opens at START + 1.1, before the deadline; behind A it opens at
    # START + 2.2, after it: known once this request is the head, at START + 1.1.
    with pytest.raises(GateClosed) as closed:
        async with gate.admit(deadline=START + 1.5):
            pytest.fail("admitted past the deadline")
    assert now() == pytest.approx(START + 1.1, abs=1e-3)
    assert "before its deadline (in 0.400 s); it opens in about 1.100 s" in str(closed.value)
    assert closed.value.retry_after == pytest.approx(1.1, abs=1e-3)
    await first
    assert_admitted(log, [("x", 0.0), ("a", 1.1)])


async def test_an_answer_meanwhile_does_not_hide_what_a_newcomer_is_refused_for() -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    answer = asyncio.Event()

    async def in_flight() -> None:
        async with gate.admit():
            await answer.wait()

    first = asyncio.create_task(in_flight())  # admitted at START, answers at + 0.5
    await asyncio.sleep(0)
    head = asyncio.create_task(admit_at(gate, [], "a"))  # waits at least 1.1 s
    await asyncio.sleep(0.5)
    answer.set()
    await first  # the answer frees nothing now: the window counts from it
    with pytest.raises(GateClosed):
        async with gate.admit(deadline=START + 0.6):
            pytest.fail("admitted past the deadline")
    assert now() == START + 0.5  # known at once, not at the deadline
    await head


# -- cancelled waiters -----------------------------------------------------------------------


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

    await admit_at(gate, log, "x")  # the next request waits 1.1 s
    tasks["a"] = asyncio.create_task(first_then_cancel_next())
    tasks["b"] = asyncio.create_task(admit_at(gate, log, "b"))
    if follower:
        tasks["c"] = asyncio.create_task(admit_at(gate, log, "c"))
    async with asyncio.timeout(60):
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert tasks["b"].cancelled()
    expected = [("x", 0.0), ("a", 1.1)] + ([("c", 2.2)] if follower else [])
    assert_admitted(log, expected)
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
    # A (the head) and C still wait; the cancelled waiter leaves lazily. A second head
    # promoted by the cancel would leave fewer.
    assert gate.waiting >= 2
    await asyncio.gather(head, last)
    assert_admitted(log, [("x", 0.0), ("a", 1.1), ("c", 2.2)])
    assert gate.waiting == 0


# -- another process's probe ---------------------------------------------------------------


def two_processes() -> tuple[UpstreamGate, UpstreamGate]:
    """Two gates on one backend, as two processes on one credential would be."""
    shared = MemoryGate()
    return UpstreamGate(backend=shared), UpstreamGate(backend=shared)


async def probe_for(gate: UpstreamGate, seconds: float) -> None:
    """Send the probe, whose answer takes ``seconds``."""
    async with gate.admit() as admission:
        assert admission.probe
        await asyncio.sleep(seconds)


async def test_a_request_behind_another_processes_probe_looks_again_until_it_answered() -> None:
    mine, theirs = two_processes()
    await mine.hold(0.5)
    await probe_for(mine, 0.0)  # this process's probe, answered: none of ours is out now
    await theirs.hold(0.5)
    probe = asyncio.create_task(probe_for(theirs, 2.0))  # out at START + 1, answered at + 3
    await asyncio.sleep(1.0)
    async with asyncio.timeout(60):  # not this process's probe: no answer wakes it
        async with mine.admit() as admission:
            assert admission.probe is False
            admitted = now()
    assert START + 3.0 <= admitted <= START + 3.0 + 0.25  # rechecked every 0.25 s
    await probe


@pytest.mark.parametrize(("answer", "admitted"), [(1.05, True), (1.2, False)])
async def test_a_request_behind_another_processes_probe_looks_once_more_at_its_deadline(
    answer: float, admitted: bool
) -> None:
    mine, theirs = two_processes()
    await theirs.hold(1.0)
    probe = asyncio.create_task(probe_for(theirs, answer))  # out at START + 1
    await asyncio.sleep(1.5)
    deadline = START + 2.1  # rechecks at + 1.75 and + 2.0, then the last look at + 2.1
    if admitted:
        async with mine.admit(deadline=deadline):
            assert now() == pytest.approx(deadline, abs=1e-3)
    else:
        with pytest.raises(GateClosed) as closed:
            async with mine.admit(deadline=deadline):
                pytest.fail("admitted while the other process's probe is out")
        assert now() == pytest.approx(deadline, abs=1e-3)
        assert "before its deadline (now); it opens in about 0.000 s" in str(closed.value)
        assert closed.value.retry_after == 0.0
    await probe
    assert mine.waiting == 0


# -- the connector's gate ----------------------------------------------------------------------


async def test_a_connectors_gate_and_its_backend_run_on_the_clock_it_is_given() -> None:
    settings = DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, rate_limits=[(1, 10.0)])
    clock = FakeTime(now=START)
    gate = connector_gate(settings, ca="digicert", clock=clock.clock, sleep=clock.sleep)
    for _ in range(2):
        async with gate.admit():
            pass
    assert gate.now() == clock.now
    assert clock.sleeps == [pytest.approx(10.1, abs=1e-4)]  # the window and the margin
    assert now() == START  # the loop's clock never moved


# -- what the gate hands its backend: every setting counts -----------------------------------


async def admitted_times(gate: UpstreamGate, count: int) -> list[float]:
    """When each of ``count`` requests, sent one after the other, was admitted (from START)."""
    times: list[float] = []
    for _ in range(count):
        async with gate.admit():
            times.append(now() - START)
    return times


@pytest.mark.parametrize("margin", [0.0, 0.5])
async def test_the_margin_is_added_to_every_window(margin: float) -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)], margin=margin)
    assert await admitted_times(gate, 3) == pytest.approx(
        [0.0, 1.0 + margin, 2.0 + 2 * margin], abs=1e-3
    )


@pytest.mark.parametrize("lost_after", [2.0, 5.0])
async def test_a_request_never_answered_counts_as_answered_lost_after_its_admission(
    lost_after: float,
) -> None:
    gate = UpstreamGate(rate_limits=[(1, 1.0)], lost_after=lost_after)
    # Admitted, and its block never left: as if its process had died mid-request.
    await gate.admit().__aenter__()
    assert await admitted_times(gate, 1) == [pytest.approx(lost_after + 1.1, abs=1e-3)]


async def holds_in_a_row(cooldown: BackoffPolicy, strikes: int) -> list[float]:
    """How long the gate is held after a 429 without ``Retry-After``, then after each of
    ``strikes`` probes rate limited again in a row."""
    gate, _ = fake_time_gate(cooldown=cooldown)
    await gate.hold()
    holds = [gate.opens_in()]
    for _ in range(strikes):
        async with gate.admit() as admission:
            assert admission.probe
            admission.hold(None, rate_limited=True)
        holds.append(gate.opens_in())
    return holds


async def test_the_cooldown_policy_sets_the_holds_of_429s_without_retry_after() -> None:
    cooldown = BackoffPolicy(initial_wait=2.0, multiplier=2.0, max_backoff=5.0, jitter=0.0)
    assert await holds_in_a_row(cooldown, 3) == pytest.approx([2.0, 4.0, 5.0, 5.0])


async def test_a_cooldown_grows_for_64_strikes_at_most() -> None:
    """A slowly growing cooldown stops growing at its 64th step: the backend is handed a
    bounded list of holds, and the last one repeats."""
    cooldown = BackoffPolicy(initial_wait=1.0, multiplier=1.01, max_backoff=10.0, jitter=0.0)
    holds = await holds_in_a_row(cooldown, 66)
    assert holds == pytest.approx([cooldown.base_wait(min(strike, 63)) for strike in range(67)])
    assert holds[64] < cooldown.base_wait(64)


@pytest.mark.parametrize("pace", [True, False])
async def test_pace_false_lets_a_free_window_go_at_once(pace: bool) -> None:
    gate = UpstreamGate(rate_limits=[(4, 1.0)], pace=pace)
    # Paced: half the window at once, then one per 0.25 s; unpaced: the whole window.
    expected = [0.0, 0.0, 0.25, 0.5] if pace else [0.0] * 4
    assert await admitted_times(gate, 4) == pytest.approx(expected, abs=1e-3)


async def test_the_default_key_is_local() -> None:
    shared = MemoryGate()
    default, named = UpstreamGate(backend=shared), UpstreamGate(backend=shared, key="local")
    await default.hold(3.0)
    with pytest.raises(GateClosed, match=r"opens in about 3.000 s"):
        async with named.admit(deadline=now()):
            pytest.fail("admitted while the gate on the same key is held")


async def test_a_gate_and_its_default_backend_run_on_the_clock_it_is_given() -> None:
    clock = FakeTime(now=START + 500.0)  # not the loop's time
    gate = UpstreamGate(rate_limits=[(1, 1.0)], clock=clock.clock)
    assert gate.now() == clock.now
    async with gate.admit():
        pass
    clock.now += 1.2  # past the window and the margin on the gate's clock, not the loop's
    async with gate.admit(deadline=clock.now):
        pass
    assert now() == START
    await gate.hold(2.0)
    clock.now += 0.5
    assert gate.opens_in() == pytest.approx(1.5)


async def test_a_fresh_gate_has_nobody_waiting() -> None:
    assert UpstreamGate().waiting == 0


async def test_a_refusal_behind_the_head_says_how_far_the_deadline_was() -> None:
    gate = UpstreamGate()
    await gate.hold(1.0)
    head = asyncio.create_task(probe_for(gate, 0.0))
    await asyncio.sleep(0)  # the head sleeps out the hold
    with pytest.raises(GateClosed) as closed:
        async with gate.admit(deadline=START + 0.5):
            pytest.fail("admitted during the hold")
    assert now() == START  # known at arrival
    assert "before its deadline (in 0.500 s); it opens in about 1.000 s" in str(closed.value)
    await head


async def test_a_request_behind_this_processes_probe_goes_as_its_answer_arrives() -> None:
    """Its own probe's answer wakes the waiter: no polling of the backend meanwhile."""
    gate = UpstreamGate()
    await gate.hold(1.0)
    probe = asyncio.create_task(probe_for(gate, 0.1))  # out at START + 1, answered at + 1.1
    log: list[tuple[str, float]] = []
    behind = asyncio.create_task(admit_at(gate, log, "b"))
    await asyncio.gather(probe, behind)
    assert_admitted(log, [("b", 1.1)])
    assert log[0][1] - START == pytest.approx(1.1, abs=1e-6)
    assert gate.cooling_down is False


async def test_a_request_behind_another_processes_probe_knows_the_gate_cools_down() -> None:
    mine, theirs = two_processes()
    await theirs.hold(1.0)
    probe = asyncio.create_task(probe_for(theirs, 1.0))  # out at START + 1, answered at + 2
    await asyncio.sleep(1.5)
    assert mine.cooling_down is False  # nothing seen yet
    with pytest.raises(GateClosed) as closed:
        async with mine.admit(deadline=now()):
            pytest.fail("admitted while the other process's probe is out")
    assert mine.cooling_down is True
    assert mine.opens_in() == 0.0  # it opens when that probe answers: not known
    assert closed.value.retry_after == 0.0
    await probe


def sectigo_settings(login: str, password: str, gate_url: str) -> SectigoSettings:
    return SectigoSettings(
        customer_uri="test-org",
        login=login,
        password=password,
        org_id=1,
        cert_type=2,
        gate_url=gate_url,
    )


async def test_a_connectors_gate_is_keyed_by_its_ca_and_whole_credential(
    tmp_path: Path,
) -> None:
    """The key is part of what a shared backend stores: every process and every version on
    one CA account must compute the same one, and two accounts never share one."""
    url = f"sqlite:///{tmp_path}/gate.db"
    gate = connector_gate(sectigo_settings(SECTIGO_LOGIN, SECTIGO_PASSWORD, url), ca="sectigo")
    account = gate_key("sectigo", f"{SECTIGO_LOGIN}\0{SECTIGO_PASSWORD}")
    same = UpstreamGate(backend=gate.backend, key=account)
    others = [
        UpstreamGate(backend=gate.backend, key=gate_key(ca, credential))
        for ca, credential in [
            ("digicert", f"{SECTIGO_LOGIN}\0{SECTIGO_PASSWORD}"),
            ("sectigo", SECTIGO_LOGIN + SECTIGO_PASSWORD),
        ]
    ]
    # The same letters split otherwise between login and password: another account.
    moved = connector_gate(
        sectigo_settings(SECTIGO_LOGIN + SECTIGO_PASSWORD[:3], SECTIGO_PASSWORD[3:], url),
        ca="sectigo",
    )
    try:
        await gate.hold(30.0)
        with pytest.raises(GateClosed):
            async with same.admit(deadline=now()):
                pytest.fail("the same account is held")
        for other in [*others, moved]:
            async with other.admit(deadline=now()):
                pass
    finally:
        await gate.aclose()
        await moved.aclose()


async def test_a_connectors_gate_needing_a_missing_client_names_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if not installed
    settings = DigiCertSettings(
        api_key=DIGICERT_API_KEY, org_id=1, gate_url="redis://127.0.0.1:6379/0"
    )
    with pytest.raises(
        ConfigError, match=r"^CERTPOLL_DIGICERT_GATE_URL redis://.*certpoll\[redis\]"
    ):
        connector_gate(settings, ca="digicert")


async def test_with_nobody_queued_the_backend_decides_not_the_last_estimate() -> None:
    """When the gate opens is an estimate on this process's clock; the backend's clock (a
    server's, for a shared backend) decides. A request nobody queues before asks it."""
    here, there = FakeTime(now=START), FakeTime(now=START + 7.0)
    gate = UpstreamGate(backend=MemoryGate(clock=there.clock), clock=here.clock)
    await gate.hold(5.0)
    assert gate.opens_in() == 5.0
    there.now += 5.0  # the hold is over by the backend's clock, not yet by this one's
    async with gate.admit(deadline=here.now) as admission:
        assert admission.probe


# -- what an answer holds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry_after", "held_for", "rate_limited"),
    [
        (RateLimited("429", status_code=429), 7.0, 7.0, 1),  # its Retry-After
        (RateLimited("429", status_code=429), None, 5.0, 1),  # the growing cooldown
        (TransientError("503", status_code=503), 7.0, 7.0, 0),
    ],
)
async def test_an_answer_that_asks_for_a_hold_holds_the_gate(
    error: TransientError, retry_after: float | None, held_for: float, rate_limited: int
) -> None:
    gate, _ = fake_time_gate()
    async with gate.admit() as admission:
        admission.observe(Pending(error, retry_after=retry_after))
        assert admission.held is True
    assert (gate.holds, gate.rate_limited) == (1, rate_limited)
    assert gate.opens_in() == pytest.approx(held_for)
    assert gate.cooling_down is True


@pytest.mark.parametrize(
    "outcome",
    [None, Pending(), Pending(retry_after=30.0), Pending(TransientError("503", status_code=503))],
)
async def test_an_answer_that_asks_for_no_hold_holds_nothing(outcome: Pending | None) -> None:
    gate, _ = fake_time_gate()
    async with gate.admit() as admission:
        admission.observe(outcome)
        assert admission.held is False
    assert (gate.holds, gate.rate_limited, gate.opens_in(), gate.cooling_down) == (0, 0, 0.0, False)
