"""Hooks for Prometheus and structlog, imported only when asked for.

``import certpoll`` never imports either library; each factory imports its library when
called and raises :class:`~certpoll.ConfigError` with the install command when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._instrumentation import PollDetails, PollHook

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from structlog.typing import FilteringBoundLogger

__all__ = ["prometheus_hook", "structlog_hook"]


def prometheus_hook(*, registry: CollectorRegistry | None = None) -> PollHook:
    """A hook counting attempts and observing waits, on ``registry`` (default: the global one).

    Metrics: ``certpoll_attempts_total{ca, outcome}`` and ``certpoll_next_wait_seconds{ca}``.
    Needs ``pip install 'certpoll[prometheus]'``.
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
        error = details.error
        log.info(
            "certpoll.attempt",
            ca=details.ca,
            order_id=details.order_id,
            attempt=details.attempt,
            outcome=details.outcome,
            status_code=details.status_code,
            waited_so_far=details.waited_so_far,
            next_wait=details.next_wait,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )

    return hook
