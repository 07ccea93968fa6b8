"""certpoll: get certificates out of CAs that issue asynchronously, without hammering them.

Everything public is re-exported here (the hook names also in :mod:`certpoll.instrumentation`);
the modules behind it are private. The connectors,
their settings (pydantic), ``poll_many`` and the mTLS transport are imported on first use,
so that ``import certpoll`` for a plain :class:`Poller` costs little more than httpx.
"""

import importlib
import typing

from . import instrumentation as instrumentation
from ._errors import AttemptTimeout as AttemptTimeout
from ._errors import AuthenticationError as AuthenticationError
from ._errors import CertpollError as CertpollError
from ._errors import ConfigError as ConfigError
from ._errors import EndpointNotFound as EndpointNotFound
from ._errors import GateClosed as GateClosed
from ._errors import LeaseLost as LeaseLost
from ._errors import OrderNotFound as OrderNotFound
from ._errors import PermanentError as PermanentError
from ._errors import RateLimited as RateLimited
from ._errors import ResponseParseError as ResponseParseError
from ._errors import SubmissionUncertain as SubmissionUncertain
from ._errors import TransientError as TransientError
from ._instrumentation import PollDetails as PollDetails
from ._instrumentation import PollHook as PollHook
from ._instrumentation import get_poll_hooks as get_poll_hooks
from ._instrumentation import logging_hook as logging_hook
from ._instrumentation import set_poll_hooks as set_poll_hooks
from ._integrations import opentelemetry_hook as opentelemetry_hook
from ._integrations import prometheus_hook as prometheus_hook
from ._integrations import structlog_hook as structlog_hook
from ._models import CAName as CAName
from ._models import Certificate as Certificate
from ._models import CertificateRequest as CertificateRequest
from ._models import OrderState as OrderState
from ._models import OrderStatus as OrderStatus
from ._models import RevocationReason as RevocationReason
from ._outcomes import AttemptResult as AttemptResult
from ._outcomes import Done as Done
from ._outcomes import Failed as Failed
from ._outcomes import Pending as Pending
from ._outcomes import StillPending as StillPending
from ._poller import BackoffPolicy as BackoffPolicy
from ._poller import Poller as Poller
from ._triage import parse_retry_after as parse_retry_after

if typing.TYPE_CHECKING:
    from ._backends.gate import Admitted as Admitted
    from ._backends.gate import Answer as Answer
    from ._backends.gate import GateBackend as GateBackend
    from ._backends.gate import GateRules as GateRules
    from ._backends.gate import Hold as Hold
    from ._backends.gate import Wait as Wait
    from ._backends.gate import gate_key as gate_key
    from ._backends.gate import open_gate_backend as open_gate_backend
    from ._backends.store import Adoption as Adoption
    from ._backends.store import OrderStore as OrderStore
    from ._backends.store import StoredOrder as StoredOrder
    from ._backends.store import StoredState as StoredState
    from ._backends.store import open_store as open_store
    from ._claimed import StoredOrderStream as StoredOrderStream
    from ._claimed import WorkerEvent as WorkerEvent
    from ._connectors._base import Connector as Connector
    from ._connectors.digicert import DigiCert as DigiCert
    from ._connectors.entrust import Entrust as Entrust
    from ._connectors.globalsign import GlobalSign as GlobalSign
    from ._connectors.registry import connector_for as connector_for
    from ._connectors.sectigo import Sectigo as Sectigo
    from ._fleet import OrderStream as OrderStream
    from ._fleet import Progress as Progress
    from ._fleet import poll_many as poll_many
    from ._gate import Admission as Admission
    from ._gate import UpstreamGate as UpstreamGate
    from ._handles import PendingOrder as PendingOrder
    from ._handles import resume as resume
    from ._mtls import MTLSTransport as MTLSTransport
    from ._mtls import mtls_mounts as mtls_mounts
    from ._settings import CASettings as CASettings
    from ._settings import DigiCertSettings as DigiCertSettings
    from ._settings import EntrustSettings as EntrustSettings
    from ._settings import GlobalSignSettings as GlobalSignSettings
    from ._settings import SectigoSettings as SectigoSettings
    from ._worker import Worker as Worker
    from ._worker import request_fingerprint as request_fingerprint
    from ._worker import submit_order as submit_order

#: Public names imported on first use, and their modules.
_LAZY: dict[str, str] = {
    "Connector": "._connectors._base",
    "connector_for": "._connectors.registry",
    "UpstreamGate": "._gate",
    "Admission": "._gate",
    "DigiCert": "._connectors.digicert",
    "Entrust": "._connectors.entrust",
    "GlobalSign": "._connectors.globalsign",
    "Sectigo": "._connectors.sectigo",
    "OrderStream": "._fleet",
    "PendingOrder": "._handles",
    "Progress": "._fleet",
    "poll_many": "._fleet",
    "resume": "._handles",
    "MTLSTransport": "._mtls",
    "mtls_mounts": "._mtls",
    "CASettings": "._settings",
    "DigiCertSettings": "._settings",
    "EntrustSettings": "._settings",
    "GlobalSignSettings": "._settings",
    "SectigoSettings": "._settings",
    "Adoption": "._backends.store",
    "GateBackend": "._backends.gate",
    "GateRules": "._backends.gate",
    "Admitted": "._backends.gate",
    "Wait": "._backends.gate",
    "Hold": "._backends.gate",
    "Answer": "._backends.gate",
    "open_gate_backend": "._backends.gate",
    "gate_key": "._backends.gate",
    "OrderStore": "._backends.store",
    "StoredOrder": "._backends.store",
    "StoredState": "._backends.store",
    "open_store": "._backends.store",
    "Worker": "._worker",
    "WorkerEvent": "._claimed",
    "StoredOrderStream": "._claimed",
    "request_fingerprint": "._worker",
    "submit_order": "._worker",
}

__all__ = [
    # Polling
    "Poller",
    "BackoffPolicy",
    "Done",
    "Pending",
    "Failed",
    "StillPending",
    "AttemptResult",
    "parse_retry_after",
    # Data
    "CAName",
    "CertificateRequest",
    "Certificate",
    "OrderState",
    "OrderStatus",
    "RevocationReason",
    # Connectors
    "Connector",
    "connector_for",
    "UpstreamGate",
    "Admission",
    "DigiCert",
    "Sectigo",
    "Entrust",
    "GlobalSign",
    "MTLSTransport",
    "mtls_mounts",
    # Many orders
    "poll_many",
    "resume",
    "PendingOrder",
    "Progress",
    "OrderStream",
    # One gate shared by many processes
    "GateBackend",
    "GateRules",
    "Admitted",
    "Wait",
    "Answer",
    "Hold",
    "open_gate_backend",
    "gate_key",
    # Orders that outlive a process
    "OrderStore",
    "Adoption",
    "StoredOrder",
    "StoredState",
    "open_store",
    "StoredOrderStream",
    "submit_order",
    "request_fingerprint",
    "Worker",
    "WorkerEvent",
    "LeaseLost",
    # Settings
    "CASettings",
    "DigiCertSettings",
    "SectigoSettings",
    "EntrustSettings",
    "GlobalSignSettings",
    # Instrumentation
    "PollDetails",
    "PollHook",
    "logging_hook",
    "set_poll_hooks",
    "get_poll_hooks",
    "prometheus_hook",
    "structlog_hook",
    "opentelemetry_hook",
    # Errors
    "CertpollError",
    "ConfigError",
    "PermanentError",
    "AuthenticationError",
    "OrderNotFound",
    "EndpointNotFound",
    "ResponseParseError",
    "TransientError",
    "RateLimited",
    "GateClosed",
    "AttemptTimeout",
    "SubmissionUncertain",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'certpoll' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
