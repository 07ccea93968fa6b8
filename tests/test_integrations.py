"""The optional Prometheus and structlog hooks."""

from __future__ import annotations

import builtins
from typing import Any

import prometheus_client
import pytest
import structlog
from structlog.testing import capture_logs

import certpoll
from tests.helpers import FakeTime


async def poll_twice(fake_time: FakeTime, hook: certpoll.PollHook) -> None:
    results: list[certpoll.Done[str] | certpoll.Pending] = [
        certpoll.Pending(certpoll.TransientError("HTTP 503", status_code=503)),
        certpoll.Done("cert"),
    ]

    async def attempt() -> certpoll.Done[str] | certpoll.Pending:
        return results.pop(0)

    poller = certpoll.Poller(
        certpoll.BackoffPolicy(jitter=0),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        hooks=[hook],
    )
    await poller.poll(attempt, ca="digicert", order_id="1")


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


@pytest.mark.parametrize(
    ("factory", "module"),
    [(certpoll.prometheus_hook, "prometheus_client"), (certpoll.structlog_hook, "structlog")],
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
