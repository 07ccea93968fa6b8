"""The connector contract, once, over the four CAs (see tests/connector_contract.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator

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
from tests.helpers import GLOBALSIGN_TOKEN, FakeTime


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
