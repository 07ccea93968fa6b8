"""The public surface is exactly what ``certpoll.__all__`` says, and nothing leaks into it."""

from __future__ import annotations

import subprocess
import sys
import types

import certpoll

EXPECTED = {
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
    # Orders that outlive a process
    "OrderStore",
    "StoredOrder",
    "StoredState",
    "open_store",
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
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(certpoll.__all__) == EXPECTED
    assert len(certpoll.__all__) == len(set(certpoll.__all__))


def test_every_public_attribute_is_in_all() -> None:
    # dir(), not vars(): the connectors and settings are imported on first use.
    public = {
        name
        for name in dir(certpoll)
        if not name.startswith("_") and not isinstance(getattr(certpoll, name), types.ModuleType)
    }
    assert public == set(certpoll.__all__)


def test_every_name_in_all_resolves() -> None:
    for name in certpoll.__all__:
        assert getattr(certpoll, name) is not None


def test_importing_certpoll_does_not_import_the_simulator_or_optional_extras() -> None:
    # (rich is not in the list: httpx itself imports it when it is installed.)
    code = (
        "import sys, certpoll; "
        "heavy = {'certpoll.testing', 'uvicorn', 'prometheus_client', 'structlog', "
        "'opentelemetry'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("certpoll").joinpath("py.typed").is_file()
