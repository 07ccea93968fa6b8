"""The optional Prometheus and structlog hooks."""

from __future__ import annotations

import builtins
from typing import Any

import prometheus_client
import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

import certpoll
from tests.helpers import FakeTime


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
    assert attributes(span) == {
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
    for order_id in ("1", "2", "3"):  # three polls that never end (cancelled, say)
        hook(
            certpoll.PollDetails(
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
