"""Hooks for Prometheus, structlog and OpenTelemetry, imported only when asked for.

``import certpoll`` never imports these libraries; each factory imports its library when
called and raises :class:`~certpoll.ConfigError` with the install command when it is missing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._instrumentation import PollDetails, PollHook

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider
    from prometheus_client import CollectorRegistry
    from structlog.typing import FilteringBoundLogger

__all__ = ["opentelemetry_hook", "prometheus_hook", "structlog_hook"]


def prometheus_hook(*, registry: CollectorRegistry | None = None) -> PollHook:
    """A hook counting attempts and observing waits, on ``registry`` (default: the global one).

    Metrics: ``certpoll_attempts_total{ca, outcome}`` and ``certpoll_next_wait_seconds{ca}``.
    Neither the order id nor the poll id is a label: a series per order or per poll would
    grow without bound. Needs ``pip install 'certpoll[prometheus]'``.
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigError(
            "prometheus_hook needs prometheus-client: pip install 'certpoll[prometheus]'"
        ) from exc
    target = prometheus_client.REGISTRY if registry is None else registry
    attempts = prometheus_client.Counter(
        "certpoll_attempts",
        "Poll attempts, by CA and outcome.",
        ["ca", "outcome"],
        registry=target,
    )
    waits = prometheus_client.Histogram(
        "certpoll_next_wait_seconds",
        "Waits scheduled between poll attempts.",
        ["ca"],
        buckets=(1, 5, 15, 45, 135, 300, 900, 3600),
        registry=target,
    )

    def hook(details: PollDetails, /) -> None:
        ca = details.ca or ""
        attempts.labels(ca=ca, outcome=details.outcome).inc()
        if details.next_wait is not None:
            waits.labels(ca=ca).observe(details.next_wait)

    return hook


def structlog_hook(*, logger: FilteringBoundLogger | None = None) -> PollHook:
    """A hook logging each attempt as a ``certpoll.attempt`` structlog event.

    The event's fields are those of :class:`~certpoll.PollDetails` (the error as its type and
    message): ``poll_id`` groups the events of one poll.

    Needs ``pip install 'certpoll[structlog]'``.
    """
    try:
        import structlog
    except ImportError as exc:
        raise ConfigError(
            "structlog_hook needs structlog: pip install 'certpoll[structlog]'"
        ) from exc
    log: FilteringBoundLogger = structlog.get_logger("certpoll") if logger is None else logger

    def hook(details: PollDetails, /) -> None:
        log.info(
            "certpoll.attempt",
            poll_id=details.poll_id,
            ca=details.ca,
            order_id=details.order_id,
            attempt=details.attempt,
            outcome=details.outcome,
            status_code=details.status_code,
            waited_so_far=details.waited_so_far,
            next_wait=details.next_wait,
            error=_described(details.error),
        )

    return hook


#: Open spans one :func:`opentelemetry_hook` keeps, by default (see ``max_open_spans``).
DEFAULT_MAX_OPEN_SPANS = 10_000


def opentelemetry_hook(
    *,
    tracer_provider: TracerProvider | None = None,
    max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
) -> PollHook:
    """A hook tracing each poll as an OpenTelemetry span, with an event per attempt.

    A poll is what :attr:`PollDetails.poll_id` names: one :meth:`Poller.poll` call, one
    :func:`~certpoll.resume`, or one order of a :func:`~certpoll.poll_many` call (whose
    attempts run in tasks of their own). Polls at once of one order, or without an order id,
    each get their own span. The span ``certpoll.poll`` starts at the poll's start (its
    first attempt minus the time already waited) and ends with the attempt that ends the
    poll. Its attributes: ``certpoll.poll_id``, ``certpoll.ca``, ``certpoll.order_id``,
    ``certpoll.outcome`` (``done``, ``failed``, or ``pending`` when still pending at
    PollMaxWait), ``certpoll.attempts`` and ``certpoll.waited_seconds``; a failed poll has
    the status ERROR. Each attempt adds a ``certpoll.attempt`` event with
    ``certpoll.attempt``, ``certpoll.outcome``, ``certpoll.next_wait_seconds``,
    ``http.response.status_code`` and ``certpoll.error`` (type and message, which never hold
    a credential) when there are any.

    ``tracer_provider`` defaults to the global one. A poll that never ends (its task was
    cancelled) leaves its span open; past ``max_open_spans`` the oldest open span is ended
    with the outcome ``abandoned``, so memory stays bounded. Needs
    ``pip install 'certpoll[opentelemetry]'``.
    """
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigError(
            "opentelemetry_hook needs opentelemetry-api: pip install 'certpoll[opentelemetry]'"
        ) from exc
    given: object = max_open_spans
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ConfigError(f"max_open_spans must be a positive integer, not {max_open_spans!r}")
    tracer = trace.get_tracer("certpoll", tracer_provider=tracer_provider)
    #: Each open poll's span, and its start in nanoseconds since the epoch.
    open_spans: OrderedDict[int, tuple[Span, int]] = OrderedDict()

    def hook(details: PollDetails, /) -> None:
        key = details.poll_id
        if key not in open_spans:
            started = time.time_ns() - int(details.waited_so_far * 1e9)
            span = tracer.start_span(
                "certpoll.poll",
                start_time=started,
                attributes={
                    "certpoll.poll_id": details.poll_id,
                    "certpoll.ca": details.ca or "",
                    "certpoll.order_id": details.order_id or "",
                },
            )
            open_spans[key] = (span, started)
            if len(open_spans) > max_open_spans:
                _, (oldest, _) = open_spans.popitem(last=False)
                oldest.set_attribute("certpoll.outcome", "abandoned")
                oldest.end()
        span, started = open_spans[key]
        # Times follow the Poller's clock, so that a virtual clock gives a consistent trace.
        now = started + int(details.waited_so_far * 1e9)
        error = _described(details.error)
        event: dict[str, str | int | float] = {
            "certpoll.attempt": details.attempt,
            "certpoll.outcome": details.outcome,
        }
        if details.next_wait is not None:
            event["certpoll.next_wait_seconds"] = details.next_wait
        if details.status_code is not None:
            event["http.response.status_code"] = details.status_code
        if error is not None:
            event["certpoll.error"] = error
        span.add_event("certpoll.attempt", attributes=event, timestamp=now)
        if details.next_wait is not None:
            return
        del open_spans[key]
        span.set_attributes(
            {
                "certpoll.outcome": details.outcome,
                "certpoll.attempts": details.attempt,
                "certpoll.waited_seconds": details.waited_so_far,
            }
        )
        if details.outcome == "failed":
            span.set_status(trace.StatusCode.ERROR, error)
        span.end(end_time=now)

    return hook


def _described(error: BaseException | None) -> str | None:
    """An attempt's error as its type and message (which never hold a credential)."""
    return None if error is None else f"{type(error).__name__}: {error}"
