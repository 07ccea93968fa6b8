"""What certpoll tells you about each attempt: the hook type, its record, the ready-made hooks.

``from certpoll import instrumentation`` gathers them in one place, as stamina does; the same
names stay importable from :mod:`certpoll` itself.
"""

from . import _instrumentation, _integrations
from ._instrumentation import AttemptOutcome as AttemptOutcome
from ._instrumentation import PollDetails as PollDetails
from ._instrumentation import PollHook as PollHook
from ._instrumentation import get_poll_hooks as get_poll_hooks
from ._instrumentation import logging_hook as logging_hook
from ._instrumentation import set_poll_hooks as set_poll_hooks
from ._integrations import opentelemetry_hook as opentelemetry_hook
from ._integrations import prometheus_hook as prometheus_hook
from ._integrations import structlog_hook as structlog_hook

__all__ = [*_instrumentation.__all__, *_integrations.__all__]
