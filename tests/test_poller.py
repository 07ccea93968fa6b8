"""The Poller's rules, in zero real time (injected clock and sleep, or looptime)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from fractions import Fraction

import httpx
import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import certpoll
from certpoll import BackoffPolicy, Done, Failed, Pending, Poller, StillPending
from certpoll._poller import CLOCK_SLACK, attempt_clock_paused, attempt_deadline
from certpoll.testing import VirtualClock
from tests.helpers import DIGICERT_API_KEY, FakeTime, run_in_virtual_time

NO_JITTER = BackoffPolicy(jitter=0)


class Script:
    """An attempt function that returns scripted results and records when it ran."""

    def __init__(self, fake_time: FakeTime, *results: Done[str] | Pending | Failed) -> None:
        self.fake_time = fake_time
        self.results = list(results)
        self.starts: list[float] = []

    async def __call__(self) -> Done[str] | Pending | Failed:
        self.starts.append(self.fake_time.now)
        if len(self.results) > 1:
            return self.results.pop(0)
        return self.results[0]


# -- the reference implementation's eleven tests, ported -------------------------------------


async def test_done_on_first_attempt(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Done("cert"))
    outcome = await fake_time.poller(NO_JITTER).poll(attempt)
    assert outcome == Done("cert")
    assert attempt.starts == [0.0]
    assert fake_time.sleeps == []


async def test_done_after_pending(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending(), Pending(), Done("cert"))
    outcome = await fake_time.poller(NO_JITTER).poll(attempt)
    assert outcome == Done("cert")
    assert len(attempt.starts) == 3


async def test_failed_terminates_immediately(fake_time: FakeTime) -> None:
    sentinel = certpoll.PermanentError("order 7 is unknown", ca="digicert", status_code=404)
    attempt = Script(fake_time, Failed(sentinel), Done("never"))
    with pytest.raises(certpoll.PermanentError) as caught:
        await fake_time.poller(NO_JITTER).poll(attempt)
    assert caught.value is sentinel
    assert len(attempt.starts) == 1


async def test_transient_errors_keep_polling(fake_time: FakeTime) -> None:
    errors = [certpoll.TransientError(f"transient 503 attempt {n}") for n in (1, 2)]
    attempt = Script(fake_time, Pending(errors[0]), Pending(errors[1]), Done("cert"))
    outcome = await fake_time.poller(NO_JITTER).poll(attempt)
    assert outcome == Done("cert")
    assert len(attempt.starts) == 3


async def test_max_wait_returns_still_pending(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending())
    outcome = await fake_time.poller(NO_JITTER, max_wait=50).poll(attempt)
    assert isinstance(outcome, StillPending)
    assert outcome.attempts >= 2
    assert outcome.elapsed == 50


async def test_max_wait_keeps_the_last_error_object(fake_time: FakeTime) -> None:
    error = certpoll.TransientError("transient 503", status_code=503)
    attempt = Script(fake_time, Pending(error))
    outcome = await fake_time.poller(NO_JITTER, max_wait=30).poll(attempt)
    assert isinstance(outcome, StillPending)
    assert outcome.last_error is error


async def test_cancel_propagates() -> None:
    never = asyncio.Event()

    async def blocked_sleep(seconds: float) -> None:
        await never.wait()

    async def attempt() -> Pending:
        return Pending()

    poller = Poller(NO_JITTER, sleep=blocked_sleep)
    task: asyncio.Task[Done[object] | StillPending] = asyncio.create_task(poller.poll(attempt))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_backoff_is_multiplicative(fake_time: FakeTime) -> None:
    policy = BackoffPolicy(initial_wait=10, max_backoff=200, jitter=0)
    attempt = Script(fake_time, Pending(), Pending(), Pending(), Done("cert"))
    await fake_time.poller(policy, max_wait=1000).poll(attempt)
    assert fake_time.sleeps == [10, 30, 90]


def test_jitter_stays_within_bounds() -> None:
    policy = BackoffPolicy(jitter=0.2)
    rng = random.Random(1)
    draws = [policy.jittered(100.0, rng) for _ in range(1000)]
    assert all(80.0 <= d <= 120.0 for d in draws)
    # The whole band is used, not just its middle.
    assert min(draws) < 82
    assert max(draws) > 118


def test_jitter_zero_is_exact() -> None:
    rng = random.Random(1)
    assert [NO_JITTER.jittered(100.0, rng) for _ in range(10)] == [100.0] * 10


async def test_defaults_apply() -> None:
    async def attempt() -> Done[int]:
        return Done(1)

    assert await Poller().poll(attempt) == Done(1)


# -- what the reference lacks -----------------------------------------------------------------


def test_default_base_waits() -> None:
    policy = BackoffPolicy()
    assert [policy.base_wait(i) for i in range(7)] == [5, 15, 45, 135, 300, 300, 300]
    assert policy.base_wait(10_000) == 300


async def test_default_ten_minute_timeline_without_jitter(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending(detail="order 1 is pending"))
    outcome = await fake_time.poller(NO_JITTER).poll(attempt)
    assert attempt.starts == [0, 5, 20, 65, 200, 500, 600]
    assert outcome == StillPending(attempts=7, elapsed=600, detail="order 1 is pending")


async def test_jitter_is_applied_by_default(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending())
    await fake_time.poller(seed=42).poll(attempt)
    bases = [5, 15, 45, 135, 300]
    jittered = fake_time.sleeps[: len(bases)]
    assert all(0.8 * b <= w <= 1.2 * b for w, b in zip(jittered, bases, strict=True))
    assert all(w != b for w, b in zip(jittered, bases, strict=True))
    assert attempt.starts[-1] == 600  # the last wait is clamped to the deadline


async def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    first, second = FakeTime(), FakeTime()
    await first.poller(seed=7).poll(Script(first, Pending()))
    await second.poller(seed=7).poll(Script(second, Pending()))
    assert first.sleeps == second.sleeps


async def test_cancel_mid_attempt_propagates() -> None:
    started, never = asyncio.Event(), asyncio.Event()

    async def attempt() -> Pending:
        started.set()
        await never.wait()
        return Pending()

    task: asyncio.Task[Done[object] | StillPending] = asyncio.create_task(Poller().poll(attempt))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.looptime
async def test_asyncio_timeout_around_poll_propagates() -> None:
    loop = asyncio.get_running_loop()
    calls = 0

    async def attempt() -> Pending:
        nonlocal calls
        calls += 1
        return Pending()

    start = loop.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(30):
            await Poller(NO_JITTER).poll(attempt)
    assert loop.time() - start == pytest.approx(30)
    assert calls == 3  # at 0, 5 and 20 s; the timeout hit mid-sleep


@pytest.mark.looptime
async def test_a_hung_attempt_is_cut_off_by_attempt_timeout() -> None:
    loop = asyncio.get_running_loop()

    async def hung() -> Done[None] | Pending:
        await asyncio.sleep(10_000)
        return Pending()

    start = loop.time()
    outcome = await Poller(NO_JITTER, max_wait=60, attempt_timeout=30).poll(hung)
    elapsed = loop.time() - start
    assert isinstance(outcome, StillPending)
    assert isinstance(outcome.last_error, certpoll.AttemptTimeout)
    assert isinstance(outcome.last_error, TimeoutError)
    assert isinstance(outcome.last_error.__cause__, TimeoutError)
    assert elapsed <= 60 + 30


@pytest.mark.looptime
async def test_the_deadline_is_hard_even_with_slow_attempts() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def slow() -> Pending:
        starts.append(loop.time())
        await asyncio.sleep(25)
        return Pending()

    start = loop.time()
    await Poller(max_wait=600, attempt_timeout=30, rng=random.Random(3)).poll(slow)
    assert loop.time() - start <= 600 + 30
    assert all(s - start <= 600 for s in starts)


async def test_an_attempt_that_raises_timeout_error_itself_is_not_hidden() -> None:
    async def attempt() -> Pending:
        raise TimeoutError("the attempt's own bug")

    with pytest.raises(TimeoutError, match="own bug"):
        await Poller().poll(attempt)


async def test_retry_after_is_a_floor(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending(retry_after=100), Done("cert"))
    await fake_time.poller(seed=1).poll(attempt)
    (wait,) = fake_time.sleeps
    assert 100 <= wait <= 110  # the floor, with at most jitter/2 on top


async def test_retry_after_below_the_backoff_does_not_shorten_it(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending(), Pending(), Pending(retry_after=1), Done("cert"))
    await fake_time.poller(NO_JITTER).poll(attempt)
    assert fake_time.sleeps == [5, 15, 45]


async def test_retry_after_past_the_deadline_ends_the_poll_early(fake_time: FakeTime) -> None:
    error = certpoll.RateLimited("429", status_code=429, retry_after=3600)
    attempt = Script(fake_time, Pending(error, retry_after=3600))
    outcome = await fake_time.poller().poll(attempt)
    assert outcome == StillPending(attempts=1, elapsed=0, last_error=error, retry_after=3600)
    assert fake_time.sleeps == []


async def test_retry_after_that_just_fits_runs_the_last_attempt_at_the_deadline(
    fake_time: FakeTime,
) -> None:
    attempt = Script(fake_time, Pending(retry_after=600), Pending())
    outcome = await fake_time.poller().poll(attempt)
    assert attempt.starts == [0, 600]
    assert isinstance(outcome, StillPending)


async def test_detail_is_the_latest_pending_message(fake_time: FakeTime) -> None:
    error = certpoll.TransientError("503")
    attempt = Script(fake_time, Pending(detail="validating"), Pending(error))
    outcome = await fake_time.poller(max_wait=10).poll(attempt)
    assert isinstance(outcome, StillPending)
    assert outcome.detail == "validating"
    assert outcome.last_error is error


async def test_resuming_continues_the_schedule(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, Pending())
    outcome = await fake_time.poller(NO_JITTER).poll(
        attempt, prior_attempts=3, first_wait=100, max_wait=1000
    )
    assert fake_time.sleeps[:3] == [100, 135, 300]
    assert isinstance(outcome, StillPending)
    assert outcome.attempts == len(attempt.starts)


async def test_an_attempt_returning_something_else_is_a_type_error() -> None:
    async def attempt() -> Pending:
        return "pending"  # type: ignore[return-value]

    with pytest.raises(TypeError, match="Done, Pending or Failed"):
        await Poller().poll(attempt)


async def test_unlimited_wait_must_be_spelled_out(fake_time: FakeTime) -> None:
    attempt = Script(fake_time, *[Pending()] * 300, Done("cert"))
    outcome = await fake_time.poller(NO_JITTER, max_wait=math.inf).poll(attempt)
    assert outcome == Done("cert")
    assert fake_time.now > 24 * 3600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_wait": 0},
        {"initial_wait": -1},
        {"multiplier": 0.5},
        {"max_backoff": 1},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"initial_wait": math.nan},
    ],
)
def test_a_bad_policy_is_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(certpoll.ConfigError):
        BackoffPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [{"max_wait": 0}, {"max_wait": -5}, {"attempt_timeout": 0}])
def test_a_bad_poller_is_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(certpoll.ConfigError, match="positive number of seconds"):
        Poller(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"prior_attempts": -1}, {"first_wait": -1.0}, {"max_wait": 0.0}]
)
async def test_bad_poll_arguments_are_config_errors(kwargs: dict[str, float]) -> None:
    async def attempt() -> Done[int]:
        return Done(1)

    with pytest.raises(certpoll.ConfigError):
        await Poller().poll(attempt, **kwargs)  # type: ignore[arg-type]


def test_base_wait_needs_a_non_negative_index() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        NO_JITTER.base_wait(-1)


def test_poller_repr_and_properties() -> None:
    poller = Poller(max_wait=60, attempt_timeout=5)
    assert poller.max_wait == 60
    assert poller.attempt_timeout == 5
    assert "max_wait=60" in repr(poller)


# -- observability ---------------------------------------------------------------------------


async def test_every_attempt_and_wait_reaches_the_hooks(fake_time: FakeTime) -> None:
    seen: list[certpoll.PollDetails] = []
    poller = Poller(NO_JITTER, clock=fake_time.clock, sleep=fake_time.sleep, hooks=[seen.append])
    error = certpoll.TransientError("503", status_code=503)
    attempt = Script(fake_time, Pending(error), Pending(detail="validating"), Done("cert"))
    await poller.poll(attempt, ca="digicert", order_id="42")
    assert [(d.attempt, d.outcome, d.next_wait) for d in seen] == [
        (1, "pending", 5),
        (2, "pending", 15),
        (3, "done", None),
    ]
    assert seen[0].status_code == 503
    assert seen[0].error is error
    assert seen[1].detail == "validating"
    assert seen[2].waited_so_far == 20
    assert {(d.ca, d.order_id) for d in seen} == {("digicert", "42")}


async def test_global_hooks_apply_to_pollers_without_their_own(fake_time: FakeTime) -> None:
    seen: list[certpoll.PollDetails] = []
    certpoll.set_poll_hooks([seen.append])
    assert certpoll.get_poll_hooks() == (seen.append,)
    await fake_time.poller().poll(Script(fake_time, Done("cert")))
    assert len(seen) == 1
    certpoll.set_poll_hooks(None)
    assert certpoll.get_poll_hooks() == (certpoll.logging_hook,)


async def test_the_default_hook_logs_on_the_certpoll_logger(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    error = certpoll.TransientError("HTTP 503", status_code=503)
    failure = certpoll.AuthenticationError("HTTP 401", status_code=401)
    attempt = Script(fake_time, Pending(), Pending(error), Failed(failure))
    with pytest.raises(certpoll.AuthenticationError):
        await fake_time.poller().poll(attempt, ca="sectigo", order_id="9")
    records = [r for r in caplog.records if r.name == "certpoll"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.INFO, logging.WARNING]
    assert records[1].certpoll_status_code == 503  # type: ignore[attr-defined]
    assert records[2].certpoll_outcome == "failed"  # type: ignore[attr-defined]
    assert all(r.certpoll_order_id == "9" for r in records)  # type: ignore[attr-defined]


async def test_the_default_hook_is_quiet_when_logging_is_off(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="certpoll")
    await fake_time.poller().poll(Script(fake_time, Done("cert")))
    assert caplog.records == []


# -- exactly one last look at the deadline, whatever the float -------------------------------


class Counting:
    """A pending attempt that gives up (Failed) after ``limit`` looks: a runaway poll fails
    the test instead of hanging it.
    """

    def __init__(self, clock: object, limit: int = 1000) -> None:
        self.clock = clock
        self.starts: list[float] = []
        self.limit = limit

    async def __call__(self) -> Pending | Failed:
        self.starts.append(asyncio.get_running_loop().time())
        if len(self.starts) >= self.limit:
            return Failed(RuntimeError(f"runaway poll: {len(self.starts)} attempts"))
        return Pending()


def looks_by_the_schedule(policy: BackoffPolicy, budget: float) -> int:
    """How many looks a poll of ``budget`` seconds makes, in exact arithmetic (jitter 0):
    a look at once, one after each wait, the last one at the deadline (or within the slack).
    """
    end, t, looks, index = Fraction(budget), Fraction(0), 1, 0
    while end - t > Fraction(CLOCK_SLACK):
        t = min(t + Fraction(policy.base_wait(index)), end)
        index += 1
        looks += 1
    return looks


@pytest.mark.looptime
@pytest.mark.parametrize("budget", [0.1 + 0.2, 0.7 + 0.1, 1e-4, 3.0000000001, 599.9999999])
async def test_a_budget_off_the_clock_grid_ends_with_one_last_look(budget: float) -> None:
    policy = BackoffPolicy(initial_wait=0.1, multiplier=3.0, max_backoff=100.0, jitter=0)
    attempt = Counting(None)
    outcome: Done[object] | StillPending = await Poller(policy, max_wait=budget).poll(attempt)
    assert isinstance(outcome, StillPending)
    assert len(attempt.starts) == looks_by_the_schedule(policy, budget)
    assert attempt.starts[-1] == pytest.approx(budget, abs=2e-3)


@pytest.mark.looptime
async def test_a_deadline_computed_from_the_loop_clock_ends_once() -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(12.345678)
    deadline = loop.time() + 0.3
    attempt = Counting(None)
    policy = BackoffPolicy(initial_wait=0.1, jitter=0)
    poller = Poller(policy, max_wait=deadline - loop.time())
    outcome: Done[object] | StillPending = await poller.poll(attempt)
    assert isinstance(outcome, StillPending)
    assert len(attempt.starts) == 3


@settings(max_examples=150)
@given(
    budget=st.floats(1e-6, 3000.0),
    initial=st.floats(0.5, 50.0),
    multiplier=st.floats(1.5, 5.0),
    start=st.floats(0.0, 1e9),
)
def test_any_budget_on_any_clock_makes_the_scheduled_looks_and_ends_at_the_deadline(
    budget: float, initial: float, multiplier: float, start: float
) -> None:
    policy = BackoffPolicy(
        initial_wait=initial, multiplier=multiplier, max_backoff=max(initial, 300.0), jitter=0
    )
    clock = VirtualClock(now=start)
    attempt = Counting(clock)
    outcome: Done[object] | StillPending = run_in_virtual_time(
        clock.poller(policy, max_wait=budget).poll(attempt)
    )
    assert isinstance(outcome, StillPending)
    assert outcome.attempts == looks_by_the_schedule(policy, budget)
    assert clock.now - start == pytest.approx(budget, abs=2e-3)


def test_next_wait_is_the_one_schedule_step() -> None:
    poller = Poller(NO_JITTER, max_wait=600.0)
    assert poller.next_wait(wait_index=0, remaining=100.0, retry_after=None) == 5.0
    assert poller.next_wait(wait_index=2, remaining=100.0, retry_after=None) == 45.0
    assert poller.next_wait(wait_index=2, remaining=30.0, retry_after=None) == 30.0
    assert poller.next_wait(wait_index=0, remaining=100.0, retry_after=60.0) == 60.0
    assert poller.next_wait(wait_index=0, remaining=50.0, retry_after=60.0) is None
    assert poller.next_wait(wait_index=0, remaining=CLOCK_SLACK / 2, retry_after=None) is None
    assert poller.next_wait(wait_index=0, remaining=0.0, retry_after=None) is None


# -- one clock: what the Poller is given, its connector's gate and poll_many use --------------


async def test_the_pollers_clock_and_sleep_reach_the_connectors_gate() -> None:
    clock = VirtualClock()
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"errors": []})
        return httpx.Response(200, json={"id": 1, "status": "pending"})

    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, rate_limits=[])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        dc = certpoll.DigiCert(settings, http=http, poller=clock.poller(max_wait=1.5))
        assert dc.gate.now() == clock.now
        first = await dc.poll_once("1")
        assert isinstance(first, Pending)
        assert dc.gate.cooling_down
        # A request outside any poll waits the hold out on the virtual clock, not for real.
        loop_before = asyncio.get_running_loop().time()
        second = await asyncio.wait_for(dc.poll_once("1"), timeout=1.0)
        assert isinstance(second, Pending)
        assert second.error is None
        assert clock.now == pytest.approx(2.0)
        assert asyncio.get_running_loop().time() - loop_before < 1.0


# -- attempt_timeout: one timer for all of a Poller's attempts --------------------------------


@settings(max_examples=60, deadline=None)
@given(
    timeout=st.sampled_from([1.0, 7.5, 30.0]),
    attempts=st.lists(
        st.tuples(
            st.floats(0.0, 60.0),  # start
            st.floats(0.0, 50.0),  # work before the gate
            st.none() | st.floats(0.0, 80.0),  # time queued at the gate (clock paused)
            st.floats(0.0, 50.0),  # work after it
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_every_attempt_is_cut_off_when_its_own_clock_runs_out(
    timeout: float, attempts: list[tuple[float, float, float | None, float]]
) -> None:
    """Attempts of one Poller, overlapping in any way, some paused at the gate: each is cut
    off exactly when its unpaused time reaches ``attempt_timeout``, and never otherwise.
    """
    margin = 1e-3
    for _, before, _, after in attempts:
        hypothesis.assume(abs(before - timeout) > margin)
        hypothesis.assume(abs(before + after - timeout) > margin)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        poller = Poller(NO_JITTER, max_wait=600.0, attempt_timeout=timeout, hooks=())

        async def one(start: float, before: float, queued: float | None, after: float) -> None:
            await asyncio.sleep(start)

            async def attempt() -> Done[None]:
                await asyncio.sleep(before)
                if queued is not None:
                    with attempt_clock_paused():
                        await asyncio.sleep(queued)
                await asyncio.sleep(after)
                return Done(None)

            outcome = await poller.run_attempt(attempt, ca="digicert", order_id="7")
            paused = queued or 0.0
            if before > timeout:
                expected_end, cut = start + timeout, True
            elif before + after > timeout:
                expected_end, cut = start + paused + timeout, True
            else:
                expected_end, cut = start + before + paused + after, False
            assert loop.time() == pytest.approx(expected_end, abs=margin)
            if cut:
                assert isinstance(outcome, Pending)
                assert isinstance(outcome.error, certpoll.AttemptTimeout)
            else:
                assert outcome == Done(None)

        await asyncio.gather(*(one(*attempt) for attempt in attempts))

    run_in_virtual_time(scenario())


@pytest.mark.looptime
async def test_a_cancel_during_a_cut_off_attempt_still_propagates() -> None:
    """The cut-off cancels the task; a cancellation asked for by someone else meanwhile is
    not swallowed with it."""
    poller = Poller(NO_JITTER, max_wait=60.0, attempt_timeout=5.0, hooks=())
    entered = asyncio.Event()

    async def stubborn() -> Done[None]:
        entered.set()
        try:
            await asyncio.sleep(100)
        finally:
            # Cut off at 5 s: cleaning up takes a while, and the task is cancelled meanwhile.
            await asyncio.shield(asyncio.sleep(2))
        return Done(None)

    task = asyncio.create_task(poller.run_attempt(stubborn))
    await entered.wait()
    await asyncio.sleep(6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


def test_a_poller_times_attempts_out_on_one_loop_after_another() -> None:
    """One Poller, used by one event loop and then by another: both cut attempts off."""
    poller = Poller(NO_JITTER, max_wait=60.0, attempt_timeout=1.0, hooks=())

    async def hung() -> Done[None]:
        await asyncio.sleep(10)
        return Done(None)

    for _ in range(2):
        outcome = run_in_virtual_time(poller.run_attempt(hung))
        assert isinstance(outcome, Pending)
        assert isinstance(outcome.error, certpoll.AttemptTimeout)


@pytest.mark.looptime
async def test_an_attempt_inside_an_attempt_gives_the_outer_deadline_back() -> None:
    poller = Poller(NO_JITTER, max_wait=60.0, attempt_timeout=5.0, hooks=())
    seen: list[float | None] = []

    async def inner() -> Done[None]:
        seen.append(attempt_deadline())
        return Done(None)

    async def outer() -> Done[None]:
        seen.append(attempt_deadline())
        await poller.run_attempt(inner, deadline=2.0)
        seen.append(attempt_deadline())
        await asyncio.sleep(6)
        return Done(None)

    outcome = await poller.run_attempt(outer, deadline=1.0)
    assert seen == [1.0, 2.0, 1.0]
    assert isinstance(outcome, Pending)  # the outer one is still cut off after 5 s
    assert attempt_deadline() is None


@pytest.mark.looptime
@pytest.mark.parametrize(("cut_off_after", "ends_at"), [(2.0, 2.0), (5.0, 5.0), (9.0, 5.0)])
async def test_an_attempt_is_cut_off_sooner_when_asked_never_later(
    cut_off_after: float, ends_at: float
) -> None:
    """``cut_off_after`` shortens one attempt (started after a longer one, it is still cut
    off first) and never lengthens it past ``attempt_timeout``."""
    loop = asyncio.get_running_loop()
    poller = Poller(NO_JITTER, max_wait=60.0, attempt_timeout=5.0, hooks=())
    ended: dict[str, float] = {}

    async def hung() -> Done[None]:
        await asyncio.sleep(100)
        return Done(None)

    async def timed(name: str, **options: float) -> Pending | Done[None] | certpoll.Failed:
        outcome = await poller.run_attempt(hung, ca="digicert", order_id=name, **options)
        ended[name] = loop.time()
        return outcome

    first = asyncio.create_task(timed("first"))
    await asyncio.sleep(0.5)
    outcome = await timed("late", cut_off_after=cut_off_after)
    await first
    assert ended == {"first": pytest.approx(5.0), "late": pytest.approx(0.5 + ends_at)}
    assert isinstance(outcome, Pending)
    assert isinstance(outcome.error, certpoll.AttemptTimeout)
    assert outcome.error.order_id == "late"
    if cut_off_after < 5.0:
        assert f"the {cut_off_after:g} s left of its poll's deadline" in str(outcome.error)
    else:
        assert "attempt_timeout (5 s)" in str(outcome.error)


@pytest.mark.looptime
async def test_an_attempt_cut_off_sooner_keeps_its_polls_deadline() -> None:
    """The gate reads the poll's deadline from the attempt: a shorter cut-off keeps it."""
    poller = Poller(NO_JITTER, max_wait=60.0, attempt_timeout=5.0, hooks=())
    seen: list[float | None] = []

    async def look() -> Done[None]:
        seen.append(attempt_deadline())
        return Done(None)

    assert await poller.run_attempt(look, deadline=42.0, cut_off_after=1.0) == Done(None)
    assert seen == [42.0]
