"""The connector contract, once, over the four CAs (see tests/connector_contract.py)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx

import certpoll
from certpoll import Done, OrderState, Pending
from tests.connector_contract import (
    CONTRACTS,
    TRIAGE,
    Answer,
    AnyConnector,
    ConnectorContract,
    check_triage,
    mock_answer,
)
from tests.helpers import GLOBALSIGN_TOKEN, FakeTime, assert_no_secrets


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CERTPOLL_/CERTCTL_ variable of the machine, and no stray ``.env``."""
    for name in list(os.environ):
        if name.upper().startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=CONTRACTS, ids=str)
def contract(request: pytest.FixtureRequest) -> ConnectorContract:
    value: ConnectorContract = request.param
    return value


@pytest.fixture
def ca(contract: ConnectorContract) -> Iterator[respx.MockRouter]:
    with respx.mock(
        base_url=contract.base_url, assert_all_called=False, assert_all_mocked=True
    ) as router:
        if contract.logs_in:
            router.post("/login").respond(200, json={"access_token": GLOBALSIGN_TOKEN})
        yield router


@pytest.fixture
async def connector(
    contract: ConnectorContract, fake_time: FakeTime
) -> AsyncIterator[AnyConnector]:
    async with contract.connector(fake_time) as opened:
        yield opened


def _status(contract: ConnectorContract, ca: respx.MockRouter) -> respx.Route:
    return ca.get(contract.status_path)


async def test_pending_words_are_pending_with_the_word(
    contract: ConnectorContract, ca: respx.MockRouter, connector: AnyConnector
) -> None:
    for word in contract.pending_words:
        _status(contract, ca).respond(200, json=contract.status_body(word))
        detail = f"{contract.noun} {contract.order_id} is {word}"
        assert await connector.poll_once(contract.order_id) == Pending(detail=detail)


async def test_failed_words_are_a_failed_status_not_an_error(
    contract: ConnectorContract, ca: respx.MockRouter, connector: AnyConnector
) -> None:
    for word in contract.failed_words:
        _status(contract, ca).respond(200, json=contract.status_body(word))
        outcome = await connector.poll_once(contract.order_id)
        assert isinstance(outcome, Done), word
        assert outcome.value.state is OrderState.FAILED
        assert outcome.value.message == f"{contract.noun} {contract.order_id} is {word}"
        assert outcome.value.certificate is None


async def test_an_unknown_word_is_pending_and_warned_once_per_word(
    contract: ConnectorContract,
    ca: respx.MockRouter,
    connector: AnyConnector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = f"WEIRD_{uuid.uuid4().hex[:8]}", f"odd-{uuid.uuid4().hex[:8]}"
    _status(contract, ca).mock(
        side_effect=[
            httpx.Response(200, json=contract.status_body(word))
            for word in (first, first, second, first)
        ]
    )
    for word in (first, first, second, first):
        outcome = await connector.poll_once(contract.order_id)
        assert isinstance(outcome, Pending)
        assert outcome.error is None
        assert outcome.detail is not None
        assert word in outcome.detail
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(first in m for m in warned) == 1
    assert sum(second in m for m in warned) == 1


@pytest.mark.parametrize(("answer", "kind", "error", "retry_after"), TRIAGE)
async def test_a_failed_status_request_is_triaged(
    contract: ConnectorContract,
    ca: respx.MockRouter,
    connector: AnyConnector,
    answer: Answer,
    kind: type,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    mock_answer(_status(contract, ca), answer, echo=contract.echo)
    outcome = await connector.poll_once(contract.order_id)
    if answer in contract.refusal_codes:
        # The CA's own "no" to the order (HVCA's 422): a FAILED order, not an error.
        assert isinstance(outcome, Done)
        assert outcome.value.state is certpoll.OrderState.FAILED
        return
    check_triage(outcome, kind, error, retry_after, ca=contract.ca, order_id=contract.order_id)
    if isinstance(answer, int):
        assert getattr(outcome.error, "status_code", None) == answer  # type: ignore[union-attr]
    elif isinstance(answer, Exception):
        assert outcome.error.__cause__ is answer  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b"null", b"\xff\xfe", b"{}", b'{"status": 7}', b'{"status": null}'],
)
async def test_an_unreadable_status_answer_is_a_parse_error(
    contract: ConnectorContract, ca: respx.MockRouter, connector: AnyConnector, body: bytes
) -> None:
    _status(contract, ca).respond(200, content=body)
    outcome = await connector.poll_once(contract.order_id)
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert outcome.error.ca == contract.ca


async def test_unusable_ids_are_refused_before_any_request(
    contract: ConnectorContract, ca: respx.MockRouter, connector: AnyConnector
) -> None:
    for order_id in contract.bad_ids:
        with pytest.raises(certpoll.ConfigError):
            await connector.poll_once(order_id)
    assert not ca.calls


# -- get_order_status (zero real time) and revoke -----------------------------------------


async def test_pending_after_the_max_wait_is_a_pending_value_not_an_error(
    contract: ConnectorContract,
    ca: respx.MockRouter,
    connector: AnyConnector,
    fake_time: FakeTime,
) -> None:
    word = contract.pending_words[0]
    route = _status(contract, ca).respond(200, json=contract.status_body(word))
    result = await connector.get_order_status(contract.order_id)
    assert result.state is OrderState.PENDING
    assert result.certificate is None
    assert result.message == f"{contract.noun} {contract.order_id} is {word}"
    assert result.last_error is None
    assert fake_time.now == pytest.approx(60.0)
    assert route.call_count == len(fake_time.sleeps) + 1


async def test_a_rejection_while_polling_is_a_failed_value_not_an_error(
    contract: ConnectorContract, ca: respx.MockRouter, connector: AnyConnector
) -> None:
    pending, failed = contract.pending_words[0], contract.failed_words[0]
    _status(contract, ca).mock(
        side_effect=[
            httpx.Response(200, json=contract.status_body(word)) for word in (pending, failed)
        ]
    )
    result = await connector.get_order_status(contract.order_id)
    assert result.state is OrderState.FAILED
    assert result.message == f"{contract.noun} {contract.order_id} is {failed}"


async def test_revoke_refuses_a_reason_that_is_not_rfc5280(
    contract: ConnectorContract, ca: respx.MockRouter, connector: AnyConnector
) -> None:
    with pytest.raises(certpoll.ConfigError, match="RevocationReason"):
        await connector.revoke(contract.revoke_id, reason=7)  # type: ignore[arg-type]
    assert not ca.calls


# -- settings, secrets, lifecycle ----------------------------------------------------------


def _prefixes(contract: ConnectorContract) -> tuple[str, str]:
    name = contract.settings_type.env_name
    return f"CERTPOLL_{name}_", f"CERTCTL_{name}_"


def _set_env(monkeypatch: pytest.MonkeyPatch, prefix: str, values: dict[str, str]) -> None:
    for suffix, value in values.items():
        monkeypatch.setenv(prefix + suffix, value)


@pytest.mark.parametrize("which", [0, 1], ids=["CERTPOLL_", "CERTCTL_"])
def test_settings_are_read_from_either_prefix_and_certpoll_wins(
    contract: ConnectorContract, monkeypatch: pytest.MonkeyPatch, which: int
) -> None:
    prefix = _prefixes(contract)[which]
    _set_env(monkeypatch, prefix, {**contract.required_env, "POLL_MAX_WAIT_SECONDS": "120"})
    read = contract.settings_type()
    assert read.poll_max_wait_seconds == 120
    assert read.model_dump(include={"org_id", "ca_id", "customer_uri"}) == {
        field.lower(): type(getattr(read, field.lower()))(value)
        for field, value in contract.required_env.items()
        if field in ("ORG_ID", "CA_ID", "CUSTOMER_URI")
    }
    monkeypatch.setenv(_prefixes(contract)[0] + "POLL_MAX_WAIT_SECONDS", "45")
    assert contract.settings_type().poll_max_wait_seconds == 45


def test_a_missing_required_setting_names_its_variables(
    contract: ConnectorContract, monkeypatch: pytest.MonkeyPatch
) -> None:
    certpoll_prefix, certctl_prefix = _prefixes(contract)
    for missing in contract.required_env:
        for suffix in contract.required_env:
            monkeypatch.delenv(certctl_prefix + suffix, raising=False)
        _set_env(
            monkeypatch,
            certctl_prefix,
            {k: v for k, v in contract.required_env.items() if k != missing},
        )
        with pytest.raises(certpoll.ConfigError, match=certpoll_prefix + missing) as caught:
            contract.settings_type()
        assert certctl_prefix + missing in str(caught.value)
        assert_no_secrets(caught.value)


@pytest.mark.parametrize(
    ("suffix", "value"),
    [
        ("POLL_MAX_WAIT_SECONDS", "ten"),
        ("POLL_MAX_WAIT_SECONDS", "-1"),
        ("POLL_INITIAL_WAIT_SECONDS", "-5"),
        ("POLL_JITTER", "2"),
        ("ATTEMPT_TIMEOUT_SECONDS", "0"),
    ],
)
@pytest.mark.parametrize("which", [0, 1], ids=["CERTPOLL_", "CERTCTL_"])
def test_a_bad_value_names_its_variable(
    contract: ConnectorContract,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    value: str,
    which: int,
) -> None:
    prefix = _prefixes(contract)[which]
    _set_env(monkeypatch, prefix, {**contract.required_env, suffix: value})
    with pytest.raises(certpoll.ConfigError, match=prefix + suffix) as caught:
        contract.settings_type()
    assert_no_secrets(caught.value)


async def test_reprs_and_dumps_hold_no_secret(
    contract: ConnectorContract, connector: AnyConnector
) -> None:
    settings = connector.settings
    assert_no_secrets(settings, connector, settings.model_dump_json(), settings.model_dump())
    kind = contract.connector_type.__name__
    assert repr(connector) == f"{kind}(base_url={contract.base_url!r})"


async def test_a_shared_client_is_left_open_and_an_owned_one_is_closed(
    contract: ConnectorContract, fake_time: FakeTime
) -> None:
    settings = contract.connector(fake_time).settings
    async with httpx.AsyncClient() as http:
        async with contract.connector_type(settings, http=http) as shared:  # type: ignore[arg-type]
            assert shared.http is http
        assert not http.is_closed
    if contract.mtls:
        # Without http= the connector reads its client certificate, which is not there.
        with pytest.raises(certpoll.ConfigError, match="CLIENT_"):
            contract.connector_type(settings)  # type: ignore[arg-type]
        return
    async with contract.connector_type(settings) as owned:  # type: ignore[arg-type]
        pass
    assert owned.http.is_closed


def test_the_connector_and_its_settings_are_exported(contract: ConnectorContract) -> None:
    for public in (contract.connector_type, contract.settings_type):
        assert getattr(certpoll, public.__name__) is public
        assert public.__name__ in certpoll.__all__
