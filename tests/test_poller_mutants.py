"""The Poller's numbers, to the edge: what tests/test_poller.py checks by shape, checked exactly.

Written against the survivors of ``make mutate`` (docs/testing-internals.md): every clock
here starts far from 0, so a time measured from the wrong origin shows; the jitter is
drawn at both ends of its band; every hook record and every error carries its fields.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random

import pytest

import certpoll
from certpoll import BackoffPolicy, Done, Failed, Pending, PollDetails, Poller, StillPending
from certpoll._poller import CLOCK_SLACK, attempt_clock_paused, attempt_deadline
from tests.helpers import FakeTime

#: Every clock here starts at this time: elapsed times must not depend on it.
START = 1_000_000.0
NO_JITTER = BackoffPolicy(jitter=0)


class Edge(random.Random):
    """A random source that always draws the low (or the high) end of the asked range."""

    def __init__(self, *, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


class Script:
    """An attempt function that returns scripted results in order, the last one forever."""

    def __init__(self, *results: Done[str] | Pending | Failed) -> None:
        self.results = list(results)

    async def __call__(self) -> Done[str] | Pending | Failed:
        if len(self.results) > 1:
            return self.results.pop(0)
        return self.results[0]


def later_clock() -> FakeTime:
    return FakeTime(now=START)


def recorder() -> tuple[list[PollDetails], list[certpoll.PollHook]]:
    records: list[PollDetails] = []
    return records, [records.append]


# -- the jitter band, both edges -------------------------------------------------------------


@pytest.mark.parametrize(("high", "factor"), [(False, 0.8), (True, 1.2)])
def test_each_wait_reaches_both_edges_of_its_band(high: bool, factor: float) -> None:
    policy = BackoffPolicy(initial_wait=5.0, jitter=0.2)
    assert policy.jittered(10.0, Edge(high=high)) == pytest.approx(10.0 * factor)


@pytest.mark.parametrize(("high", "factor"), [(False, 1.0), (True, 1.1)])
def test_a_retry_after_floor_gets_up_to_half_the_jitter_on_top(high: bool, factor: float) -> None:
    poller = Poller(BackoffPolicy(initial_wait=1.0, jitter=0.2), rng=Edge(high=high))
    wait = poller.next_wait(wait_index=0, remaining=600.0, retry_after=100.0)
    assert wait == pytest.approx(100.0 * factor)


def test_the_last_look_comes_unless_the_deadline_is_within_the_slack() -> None:
    poller = Poller(NO_JITTER)
    assert poller.next_wait(wait_index=0, remaining=CLOCK_SLACK, retry_after=None) is None
    assert poller.next_wait(wait_index=0, remaining=2 * CLOCK_SLACK, retry_after=None) == (
        2 * CLOCK_SLACK
    )


def test_a_floor_that_ends_exactly_at_the_deadline_still_fits() -> None:
    poller = Poller(NO_JITTER)
    assert poller.next_wait(wait_index=0, remaining=30.0, retry_after=30.0) == 30.0
    assert poller.next_wait(wait_index=0, remaining=30.0, retry_after=30.5) is None


# -- the policy's limits, accepted at the edge --------------------------------------------------


def test_the_smallest_valid_policy_is_accepted() -> None:
    policy = BackoffPolicy(initial_wait=7.0, multiplier=1.0, max_backoff=7.0, jitter=0.0)
    assert [policy.base_wait(n) for n in range(3)] == [7.0, 7.0, 7.0]
    assert policy.jittered(7.0, Edge(high=True)) == 7.0


@pytest.mark.parametrize("jitter", [1.0, -0.01, math.nan, math.inf])
def test_a_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(certpoll.ConfigError, match="jitter must be a fraction"):
        BackoffPolicy(jitter=jitter)


# -- the poll's arguments --------------------------------------------------------------------


async def test_the_arguments_of_poll_are_named_when_refused() -> None:
    poller = later_clock().poller()
    attempt = Script(Done("x"))
    with pytest.raises(certpoll.ConfigError, match="prior_attempts must be 0 or more, not -1"):
        await poller.poll(attempt, prior_attempts=-1)
    with pytest.raises(certpoll.ConfigError, match="first_wait must be 0 or more seconds"):
        await poller.poll(attempt, first_wait=-1.0)
    with pytest.raises(certpoll.ConfigError, match=r"^max_wait must be a positive number"):
        await poller.poll(attempt, max_wait=0.0)


async def test_a_sub_second_first_wait_is_waited() -> None:
    clock = later_clock()
    outcome = await clock.poller(NO_JITTER).poll(Script(Done("x")), first_wait=0.5)
    assert outcome == Done("x")
    assert clock.sleeps == [0.5]


async def test_a_wrong_result_type_is_named() -> None:
    async def wrong() -> Done[str]:
        return "issued"  # type: ignore[return-value]

    with pytest.raises(TypeError, match="not <class 'str'>"):
        await later_clock().poller().poll(wrong)


# -- a negative or sub-second Retry-After ---------------------------------------------------------


async def test_a_sub_second_retry_after_is_the_floor_as_given() -> None:
    clock = later_clock()
    policy = BackoffPolicy(initial_wait=0.1, multiplier=1.0, max_backoff=0.1, jitter=0.0)
    attempt = Script(Pending(retry_after=0.5), Done("x"))
    assert await clock.poller(policy).poll(attempt) == Done("x")
    assert clock.sleeps == [0.5]


async def test_a_negative_retry_after_is_no_floor() -> None:
    clock = later_clock()
    attempt = Script(Pending(retry_after=-30.0), Done("x"))
    assert await clock.poller(NO_JITTER).poll(attempt) == Done("x")
    assert clock.sleeps == [5.0]


# -- elapsed times, on a clock that does not start at 0 -----------------------------------------


async def test_still_pending_counts_elapsed_time_from_the_start_of_the_poll() -> None:
    clock = later_clock()
    outcome = await clock.poller(NO_JITTER, max_wait=60.0).poll(Script(Pending(detail="queued")))
    assert isinstance(outcome, StillPending)
    assert outcome.elapsed == pytest.approx(60.0)
    assert outcome.detail == "queued"


async def test_every_hook_record_of_a_poll_that_ends_done() -> None:
    clock = later_clock()
    records, hooks = recorder()
    attempt = Script(Pending(detail="validating"), Pending(), Done("cert"))
    poller = clock.poller(NO_JITTER, hooks=hooks)
    assert await poller.poll(attempt, ca="digicert", order_id="42") == Done("cert")
    assert [(r.attempt, r.outcome, r.waited_so_far, r.next_wait) for r in records] == [
        (1, "pending", 0.0, 5.0),
        (2, "pending", 5.0, 15.0),
        (3, "done", 20.0, None),
    ]
    assert {(r.ca, r.order_id) for r in records} == {("digicert", "42")}
    # The CA's latest words stay with every later record, done included.
    assert [r.detail for r in records] == ["validating"] * 3
    assert records[-1].error is None


async def test_the_hook_record_of_a_poll_that_fails() -> None:
    clock = later_clock()
    records, hooks = recorder()
    refusal = certpoll.PermanentError("rejected", ca="sectigo", status_code=400)
    attempt = Script(Pending(detail="pending review"), Failed(refusal))
    with pytest.raises(certpoll.PermanentError) as raised:
        await clock.poller(NO_JITTER, hooks=hooks).poll(attempt, ca="sectigo", order_id="7")
    assert raised.value is refusal
    last = records[-1]
    assert (last.attempt, last.outcome, last.waited_so_far, last.next_wait) == (
        2,
        "failed",
        5.0,
        None,
    )
    assert last.error is refusal
    assert last.status_code == 400
    assert last.detail == "pending review"


async def test_the_hook_record_of_a_poll_that_gives_up() -> None:
    clock = later_clock()
    records, hooks = recorder()
    busy = certpoll.TransientError("busy", ca="entrust", status_code=503)
    poller = clock.poller(NO_JITTER, max_wait=10.0, hooks=hooks)
    outcome = await poller.poll(Script(Pending(busy)), ca="entrust", order_id="9")
    assert isinstance(outcome, StillPending)
    assert [(r.outcome, r.waited_so_far, r.next_wait) for r in records] == [
        ("pending", 0.0, 5.0),
        ("pending", 5.0, 5.0),
        ("pending", 10.0, None),
    ]
    assert all(r.error is busy and r.status_code == 503 for r in records)


# -- one attempt: its deadline and its timeout --------------------------------------------------


async def test_an_attempt_knows_its_polls_deadline() -> None:
    clock = later_clock()
    seen: list[float | None] = []

    async def attempt() -> Done[str]:
        seen.append(attempt_deadline())
        return Done("x")

    await clock.poller(max_wait=120.0).poll(attempt)
    assert seen == [START + 120.0]
    assert attempt_deadline() is None


@pytest.mark.looptime(start=START)
async def test_an_attempt_timeout_names_the_ca_and_the_order() -> None:
    async def hung() -> Done[None] | Pending:
        await asyncio.sleep(10_000)
        return Pending()

    poller = Poller(NO_JITTER, max_wait=4.0, attempt_timeout=3.0)
    outcome = await poller.poll(hung, ca="globalsign", order_id="cert-5")
    assert isinstance(outcome, StillPending)
    error = outcome.last_error
    assert isinstance(error, certpoll.AttemptTimeout)
    assert (error.ca, error.order_id) == ("globalsign", "cert-5")
    assert str(error) == "poll attempt took longer than attempt_timeout (3 s)"
    assert outcome.elapsed == pytest.approx(4.0 + 3.0)


@pytest.mark.looptime(start=START)
async def test_time_paused_for_the_gate_does_not_count_against_the_attempt() -> None:
    async def queued_then_answered() -> Done[str]:
        with attempt_clock_paused():
            await asyncio.sleep(50.0)  # queued at the gate, longer than attempt_timeout
        return Done("cert")

    poller = Poller(NO_JITTER, max_wait=600.0, attempt_timeout=30.0)
    assert await poller.poll(queued_then_answered) == Done("cert")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"initial_wait": 0.0}, "initial_wait must be a positive number of seconds, not 0.0"),
        ({"multiplier": 0.5}, "multiplier must be at least 1, not 0.5"),
        (
            {"initial_wait": 10.0, "max_backoff": 9.0},
            r"max_backoff must be a number of seconds no smaller than initial_wait \(10.0\), "
            r"not 9.0",
        ),
    ],
)
def test_a_refused_policy_names_the_setting(policy: dict[str, float], message: str) -> None:
    with pytest.raises(certpoll.ConfigError, match=f"^{message}$"):
        BackoffPolicy(**policy)


def test_a_refused_poller_limit_is_named() -> None:
    with pytest.raises(certpoll.ConfigError, match=r"^max_wait must be a positive number"):
        Poller(max_wait=-1.0)
    with pytest.raises(certpoll.ConfigError, match=r"^attempt_timeout must be a positive number"):
        Poller(attempt_timeout=-1.0)


# -- the default hook: a record is built only for a level the logger keeps ---------------------


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])
async def test_the_default_hook_logs_each_attempt_at_its_own_level(
    level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Pending without an error at DEBUG, with one at INFO, a failure at WARNING: each is
    logged exactly when the ``certpoll`` logger keeps its level."""
    caplog.set_level(level, logger="certpoll")
    busy = certpoll.TransientError("HTTP 503", status_code=503)
    refusal = certpoll.AuthenticationError("HTTP 401", status_code=401)
    attempt = Script(Pending(), Pending(busy), Failed(refusal))
    with pytest.raises(certpoll.AuthenticationError):
        await later_clock().poller(NO_JITTER).poll(attempt, ca="sectigo", order_id="9")
    levels = [r.levelno for r in caplog.records if r.name == "certpoll"]
    assert levels == [x for x in (logging.DEBUG, logging.INFO, logging.WARNING) if x >= level]


# -- the attempt's scope: one watchdog per Poller, paused by the gate ------------------------


@pytest.mark.looptime(start=START)
async def test_run_attempt_cut_off_names_the_ca_and_the_order_and_keeps_its_cause() -> None:
    async def hung() -> Done[None] | Pending:
        await asyncio.sleep(10_000)
        return Pending()

    poller = Poller(NO_JITTER, attempt_timeout=3.0)
    outcome = await poller.run_attempt(hung, ca="sectigo", order_id="777")
    assert isinstance(outcome, Pending)
    error = outcome.error
    assert isinstance(error, certpoll.AttemptTimeout)
    assert (error.ca, error.order_id) == ("sectigo", "777")
    # Chained as asyncio.timeout chains it: TimeoutError, from the cancellation that cut it off.
    assert isinstance(error.__cause__, TimeoutError)
    assert isinstance(error.__cause__.__cause__, asyncio.CancelledError)
    assert asyncio.get_running_loop().time() == pytest.approx(START + 3.0)


@pytest.mark.looptime(start=START)
async def test_an_attempt_without_a_timeout_still_carries_its_deadline_and_pauses() -> None:
    seen: list[float | None] = []

    async def queued_then_answered() -> Done[str]:
        seen.append(attempt_deadline())
        with attempt_clock_paused():  # the gate, with no attempt clock to stop
            await asyncio.sleep(50.0)
        return Done("cert")

    poller = Poller(NO_JITTER, max_wait=600.0, attempt_timeout=math.inf)
    assert await poller.poll(queued_then_answered) == Done("cert")
    assert seen == [START + 600.0]


@pytest.mark.looptime(start=START)
async def test_a_nested_pause_stops_the_clock_once_and_counts_on_after_it() -> None:
    async def paused_twice_then_slow() -> Done[str] | Pending:
        with attempt_clock_paused():
            await asyncio.sleep(20.0)
            with attempt_clock_paused():  # a second layer of queueing: still paused
                await asyncio.sleep(20.0)
        await asyncio.sleep(29.0)  # 29 s of the 30 s clock: in time
        return Done("cert")

    poller = Poller(NO_JITTER, max_wait=600.0, attempt_timeout=30.0)
    assert await poller.run_attempt(paused_twice_then_slow) == Done("cert")

    async def paused_twice_then_too_slow() -> Done[str] | Pending:
        with attempt_clock_paused(), attempt_clock_paused():
            await asyncio.sleep(20.0)
        await asyncio.sleep(31.0)
        return Done("late")

    started = asyncio.get_running_loop().time()
    outcome = await poller.run_attempt(paused_twice_then_too_slow)
    assert isinstance(outcome, Pending)
    assert isinstance(outcome.error, certpoll.AttemptTimeout)
    assert asyncio.get_running_loop().time() - started == pytest.approx(20.0 + 30.0)


async def test_an_attempt_outside_a_task_is_refused_by_name() -> None:
    """Reachable from a loop callback: the loop runs, but no task does."""
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[RuntimeError] = loop.create_future()

    async def attempt() -> Done[str]:
        return Done("x")

    def run_in_a_callback() -> None:
        coroutine = Poller().run_attempt(attempt)
        try:
            coroutine.send(None)
        except RuntimeError as error:
            refused.set_result(error)
        finally:
            coroutine.close()

    loop.call_soon(run_in_a_callback)
    assert str(await refused) == "a poll attempt runs in an asyncio task"
