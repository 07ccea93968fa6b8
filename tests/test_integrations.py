"""The optional Prometheus, structlog and OpenTelemetry hooks."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

import certpoll
from tests.helpers import FakeTime, run_in_virtual_time
from tests.test_fleet import FakeCertCentral, collect, digicert


async def poll_twice(
    fake_time: FakeTime,
    hook: certpoll.PollHook,
    last: certpoll.Done[str] | certpoll.Failed | certpoll.Pending | None = None,
    *,
    order_id: str = "1",
    max_wait: float = 600.0,
) -> object:
    results: list[certpoll.Done[str] | certpoll.Failed | certpoll.Pending] = [
        certpoll.Pending(certpoll.TransientError("HTTP 503", status_code=503)),
        certpoll.Done("cert") if last is None else last,
    ]

    async def attempt() -> certpoll.Done[str] | certpoll.Failed | certpoll.Pending:
        return results.pop(0) if len(results) > 1 else results[0]

    poller = certpoll.Poller(
        certpoll.BackoffPolicy(jitter=0),
        max_wait=max_wait,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        hooks=[hook],
    )
    return await poller.poll(attempt, ca="digicert", order_id=order_id)


async def test_prometheus_hook(fake_time: FakeTime) -> None:
    registry = prometheus_client.CollectorRegistry()
    await poll_twice(fake_time, certpoll.prometheus_hook(registry=registry))
    value = registry.get_sample_value
    assert value("certpoll_attempts_total", {"ca": "digicert", "outcome": "pending"}) == 1
    assert value("certpoll_attempts_total", {"ca": "digicert", "outcome": "done"}) == 1
    assert value("certpoll_next_wait_seconds_sum", {"ca": "digicert"}) == 5


async def test_structlog_hook(fake_time: FakeTime) -> None:
    with capture_logs() as events:
        await poll_twice(fake_time, certpoll.structlog_hook(logger=structlog.get_logger()))
    assert [e["outcome"] for e in events] == ["pending", "done"]
    assert events[0]["poll_id"] == events[1]["poll_id"] > 0  # one poll
    assert events[0]["status_code"] == 503
    assert events[0]["error"] == "TransientError: HTTP 503"


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


async def test_opentelemetry_hook_a_span_per_poll_and_an_event_per_attempt(
    fake_time: FakeTime,
) -> None:
    provider, exporter = traced()
    await poll_twice(fake_time, certpoll.opentelemetry_hook(tracer_provider=provider))
    [span] = exporter.get_finished_spans()
    assert span.name == "certpoll.poll"
    poll_id = attributes(span)["certpoll.poll_id"]
    assert isinstance(poll_id, int)
    assert poll_id > 0
    assert attributes(span) == {
        "certpoll.poll_id": poll_id,
        "certpoll.ca": "digicert",
        "certpoll.order_id": "1",
        "certpoll.outcome": "done",
        "certpoll.attempts": 2,
        "certpoll.waited_seconds": 5.0,
    }
    assert span.status.status_code is StatusCode.UNSET
    first, second = (dict(e.attributes or {}) for e in span.events)
    assert [e.name for e in span.events] == ["certpoll.attempt"] * 2
    assert first == {
        "certpoll.attempt": 1,
        "certpoll.outcome": "pending",
        "certpoll.next_wait_seconds": 5.0,
        "http.response.status_code": 503,
        "certpoll.error": "TransientError: HTTP 503",
    }
    assert second == {"certpoll.attempt": 2, "certpoll.outcome": "done"}
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time - span.start_time == 5 * 10**9  # the wait, on the Poller's clock
    assert [e.timestamp - span.start_time for e in span.events] == [0, 5 * 10**9]


async def test_opentelemetry_hook_failed_and_still_pending_polls(fake_time: FakeTime) -> None:
    provider, exporter = traced()
    hook = certpoll.opentelemetry_hook(tracer_provider=provider)
    refused = certpoll.Failed(certpoll.PermanentError("HTTP 400: bad CSR", status_code=400))
    with pytest.raises(certpoll.PermanentError):
        await poll_twice(fake_time, hook, refused, order_id="2")
    waiting = certpoll.Pending(detail="needs approval")
    outcome = await poll_twice(fake_time, hook, waiting, order_id="3", max_wait=60)
    assert isinstance(outcome, certpoll.StillPending)
    failed, pending = exporter.get_finished_spans()
    assert attributes(failed)["certpoll.outcome"] == "failed"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "PermanentError: HTTP 400: bad CSR"
    assert attributes(pending)["certpoll.outcome"] == "pending"
    assert pending.status.status_code is StatusCode.UNSET
    assert len(pending.events) == attributes(pending)["certpoll.attempts"]


async def test_opentelemetry_hook_keeps_a_bounded_number_of_open_spans() -> None:
    provider, exporter = traced()
    hook = certpoll.opentelemetry_hook(tracer_provider=provider, max_open_spans=2)
    for poll_id, order_id in enumerate(("1", "2", "3"), 1):  # three polls that never end
        hook(
            certpoll.PollDetails(
                poll_id=poll_id,
                ca="sectigo",
                order_id=order_id,
                attempt=1,
                outcome="pending",
                status_code=None,
                waited_so_far=0.0,
                next_wait=5.0,
                error=None,
            )
        )
    [abandoned] = exporter.get_finished_spans()
    assert attributes(abandoned)["certpoll.order_id"] == "1"
    assert attributes(abandoned)["certpoll.outcome"] == "abandoned"


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_opentelemetry_hook_refuses_a_bad_bound(bad: Any) -> None:
    with pytest.raises(certpoll.ConfigError, match="max_open_spans"):
        certpoll.opentelemetry_hook(max_open_spans=bad)


@pytest.mark.parametrize(
    ("factory", "module"),
    [
        (certpoll.prometheus_hook, "prometheus_client"),
        (certpoll.structlog_hook, "structlog"),
        (certpoll.opentelemetry_hook, "opentelemetry"),
    ],
)
def test_a_missing_library_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, factory: Any, module: str
) -> None:
    real_import = builtins.__import__

    def without(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module:
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    with pytest.raises(certpoll.ConfigError, match=r"pip install 'certpoll\["):
        factory()


# -- a span per poll, however polls overlap ---------------------------------------------------


def attempt_numbers(span: ReadableSpan) -> list[object]:
    return [dict(e.attributes or {})["certpoll.attempt"] for e in span.events]


@settings(max_examples=40, deadline=None)
@given(
    polls=st.lists(
        st.tuples(st.sampled_from([None, "1"]), st.integers(min_value=0, max_value=3)),
        min_size=1,
        max_size=5,
    )
)
def test_opentelemetry_hook_one_span_per_poll_however_polls_overlap(
    polls: list[tuple[str | None, int]],
) -> None:
    """Polls at once, of one order or with no order id at all (a plain ``Poller().poll``),
    each get a span of their own with their own attempts, on one hook and one Poller."""
    provider, exporter = traced()
    poller = certpoll.Poller(
        certpoll.BackoffPolicy(jitter=0),
        hooks=[certpoll.opentelemetry_hook(tracer_provider=provider)],
    )

    async def one_poll(order_id: str | None, pending: int) -> None:
        answers: Iterator[certpoll.Done[str] | certpoll.Pending] = iter(
            [certpoll.Pending()] * pending + [certpoll.Done("cert")]
        )

        async def attempt() -> certpoll.Done[str] | certpoll.Pending:
            return next(answers)

        await poller.poll(attempt, order_id=order_id)

    async def all_at_once() -> None:
        await asyncio.gather(*(one_poll(order_id, pending) for order_id, pending in polls))

    run_in_virtual_time(all_at_once())
    spans = exporter.get_finished_spans()
    assert sorted(len(span.events) for span in spans) == sorted(p + 1 for _, p in polls)
    for span in spans:
        assert attempt_numbers(span) == list(range(1, len(span.events) + 1))
        assert attributes(span)["certpoll.attempts"] == len(span.events)
    assert len({attributes(span)["certpoll.poll_id"] for span in spans}) == len(polls)


async def test_opentelemetry_hook_sequential_polls_of_one_order_are_two_spans(
    fake_time: FakeTime,
) -> None:
    provider, exporter = traced()
    hook = certpoll.opentelemetry_hook(tracer_provider=provider)
    await poll_twice(fake_time, hook, order_id="1")
    await poll_twice(fake_time, hook, order_id="1")
    first, second = exporter.get_finished_spans()
    assert attempt_numbers(first) == attempt_numbers(second) == [1, 2]
    assert attributes(first)["certpoll.poll_id"] != attributes(second)["certpoll.poll_id"]


@pytest.mark.looptime
async def test_opentelemetry_hook_poll_many_gives_each_order_one_span() -> None:
    """Each order's attempts run in tasks of their own, yet make one span: and a poll of the
    same order at the same time (here ``get_order_status``) makes another."""
    provider, exporter = traced()
    hook = certpoll.opentelemetry_hook(tracer_provider=provider)
    async with digicert(FakeCertCentral(issue_on=6), hooks=[hook]) as dc:
        alone = asyncio.create_task(dc.get_order_status("1001"))
        statuses = await collect(certpoll.poll_many(dc, ["1000", "1001", "1002"]))
        await alone
    assert [s.state for s in statuses] == [certpoll.OrderState.ISSUED] * 3
    spans = exporter.get_finished_spans()
    by_order = sorted(
        (str(attributes(span)["certpoll.order_id"]), attempt_numbers(span)) for span in spans
    )
    assert [order_id for order_id, _ in by_order] == ["1000", "1001", "1001", "1002"]
    assert by_order[0][1] == by_order[3][1] == [1, 2, 3, 4, 5, 6]
    # The two polls of 1001 share the CA's count of looks: the sixth is issued and ends one
    # poll, the other's next look (the seventh) ends the other.
    assert sum(len(numbers) for _, numbers in by_order[1:3]) == 7
    for _, numbers in by_order:
        assert numbers == list(range(1, len(numbers) + 1))
    assert len({attributes(span)["certpoll.poll_id"] for span in spans}) == 4


@pytest.mark.looptime
async def test_opentelemetry_hook_a_resumed_poll_is_a_span_of_its_own() -> None:
    """A poll_many stopped midway leaves its order's span open; resuming the order later
    starts a new span, counting on from the attempts already made."""
    provider, exporter = traced()
    hook = certpoll.opentelemetry_hook(tracer_provider=provider)
    async with digicert(FakeCertCentral(issue_on=4), hooks=[hook]) as dc:
        async with certpoll.poll_many(dc, ["1000"]) as stream:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(10):  # two looks, at 0 and about 5 s
                    await collect(stream)
        [handle] = stream.pending()
        assert handle.attempts == 2
        status = await certpoll.resume(dc, handle)
    assert status.state is certpoll.OrderState.ISSUED
    [resumed] = exporter.get_finished_spans()  # the stopped poll's span stays open
    assert attempt_numbers(resumed) == [3, 4]
    assert attributes(resumed)["certpoll.attempts"] == 4
