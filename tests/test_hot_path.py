"""The per-attempt shortcuts (issue 16) keep the behaviour they shortcut.

One read when the body's size is declared; certificates parsed from the answer's bytes; a
CA's own links and PEM remembered; no attempt record built for hooks that discard it.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

import certpoll
from certpoll._certs import certificate_from_pem
from certpoll._connectors import _base as _connector
from certpoll._instrumentation import (
    AttemptOutcome,
    logger,
    logging_hook,
    new_poll_id,
    reads_attempt,
)
from certpoll.testing import TestPKI

from .helpers import DIGICERT_API_KEY, FakeTime
from .test_fleet import FakeCertCentral, collect
from .test_fleet import digicert as fleet_digicert

CAP = 1000


class Lying(httpx.AsyncByteStream):
    """A body longer than the Content-Length its response declares."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"x" * self.size


def _digicert(handler: httpx.MockTransport, fake_time: FakeTime) -> certpoll.DigiCert:
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    return certpoll.DigiCert(
        settings, http=httpx.AsyncClient(transport=handler), poller=fake_time.poller()
    )


def _status_body(size: int) -> bytes:
    """A DigiCert status answer of exactly ``size`` bytes (at least 32)."""
    head = b'{"status": "pending", "pad": "'
    return head + b"p" * (size - len(head) - 2) + b'"}'


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=40, max_value=3 * CAP),
    framing=st.sampled_from(["declared", "chunked", "lying", "gzip"]),
)
async def test_a_body_is_refused_exactly_when_it_is_larger_than_the_cap(
    size: int, framing: str
) -> None:
    body = _status_body(size)

    def answer(request: httpx.Request) -> httpx.Response:
        if framing == "declared":
            return httpx.Response(200, content=body)
        if framing == "gzip":
            # Declared small, far larger once decoded: read in chunks, never trusted.
            return httpx.Response(
                200, content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
            )
        if framing == "lying":
            # A transport without framing could deliver more than it declared.
            return httpx.Response(200, headers={"Content-Length": "40"}, stream=Lying(size))
        return httpx.Response(200, stream=Lying(size) if size > CAP else httpx.ByteStream(body))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_connector, "MAX_RESPONSE_BYTES", CAP)
        fake_time = FakeTime()
        async with _digicert(httpx.MockTransport(answer), fake_time) as dc:
            outcome = await dc.poll_once("1")
    if size > CAP:
        assert isinstance(outcome, certpoll.Failed)
        assert f"larger than {CAP} bytes" in str(outcome.error)
    elif framing == "lying":
        assert isinstance(outcome, certpoll.Failed)  # 'x' * size is not JSON
        assert "not JSON" in str(outcome.error)
    else:
        assert outcome == certpoll.Pending(detail="order 1 is pending")


# -- certificates ------------------------------------------------------------------------------


def _leaf_pem(pki: TestPKI, serial: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    leaf = pki.issue(public_key=key, common_name="o.example.com", dns_names=(), serial=serial)
    return leaf.public_bytes(Encoding.PEM).decode()


PKI = TestPKI()


@settings(max_examples=20, deadline=None)
@given(order=st.permutations([0, 1, 2]), crlf=st.booleans(), serial=st.integers(1, 2**60))
def test_bytes_and_text_give_the_same_certificate(
    order: list[int], crlf: bool, serial: int
) -> None:
    blocks = [_leaf_pem(PKI, serial), *(b + "-----END CERTIFICATE-----\n" for b in _split())]
    text = "".join(blocks[i] for i in order)
    if crlf:
        text = text.replace("\n", "\r\n")
    from_text = _read(text)
    assert _read(text.encode()) == from_text
    assert from_text.serial == str(serial)
    assert from_text.chain_pem == PKI.chain_pem


def _read(bundle: str | bytes) -> certpoll.Certificate:
    return certificate_from_pem(bundle, ca="digicert", order_id="1", ca_certificate_id="7")


def _split() -> list[str]:
    return PKI.chain_pem.split("-----END CERTIFICATE-----\n")[:-1]


def test_bytes_that_are_not_a_certificate_are_a_parse_error() -> None:
    for junk in (b"\xff\xfe not ascii", b"not base64 !", b"-----BEGIN CERTIFICATE-----\nAA=\n"):
        with pytest.raises(certpoll.ResponseParseError):
            _read(junk)


def test_a_remembered_link_does_not_vouch_for_a_look_alike() -> None:
    """A root with the same name but another key is checked, not taken from memory."""
    genuine = TestPKI(name="look-alike")
    impostor = TestPKI(name="look-alike")
    leaf = _leaf_pem(genuine, 1)
    assert _read(leaf + genuine.chain_pem).chain_pem == genuine.chain_pem
    intermediate = genuine.chain_pem.removesuffix(genuine.root_pem)
    mixed = _read(leaf + intermediate + impostor.root_pem)
    assert mixed.chain_pem == intermediate
    # And the other way round: the impostor's intermediate does not sign the genuine leaf.
    other = impostor.chain_pem.removesuffix(impostor.root_pem)
    assert _read(leaf + other + genuine.root_pem).chain_pem == ""


# -- attempt records ---------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def certpoll_level() -> Iterator[None]:
    before = logger.level
    yield
    logger.setLevel(before)


@pytest.mark.usefixtures("certpoll_level")
@given(
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]),
    outcome=st.sampled_from(["done", "pending", "failed"]),
    with_error=st.booleans(),
)
def test_a_record_is_built_exactly_when_a_hook_would_read_it(
    level: int, outcome: AttemptOutcome, with_error: bool
) -> None:
    logger.setLevel(level)
    error = certpoll.TransientError("x") if with_error else None
    handler = _Collect()
    logger.addHandler(handler)
    try:
        logging_hook(
            certpoll.PollDetails(
                ca="digicert",
                order_id="1",
                attempt=1,
                outcome=outcome,
                status_code=None,
                waited_so_far=0.0,
                next_wait=None,
                error=error,
            )
        )
    finally:
        logger.removeHandler(handler)
    # The default hook: a record only when the logger keeps what the hook would log.
    assert reads_attempt((logging_hook,), outcome, error) == bool(handler.records)
    assert not reads_attempt((), outcome, error)
    assert reads_attempt((lambda details: None,), outcome, error)


async def test_every_attempt_reaches_a_hook_of_its_own(fake_time: FakeTime) -> None:
    seen: list[certpoll.PollDetails] = []
    poller = fake_time.poller(max_wait=25.0, hooks=[seen.append])
    answers: Iterator[certpoll.Done[str] | certpoll.Pending] = iter(
        [certpoll.Pending(detail="a"), certpoll.Pending(), certpoll.Done("x")]
    )

    async def attempt() -> certpoll.Done[str] | certpoll.Pending:
        return next(answers)

    assert await poller.poll(attempt) == certpoll.Done("x")
    assert [(d.attempt, d.outcome, d.detail) for d in seen] == [
        (1, "pending", "a"),
        (2, "pending", "a"),
        (3, "done", "a"),
    ]


async def _one_poll_and_a_poll_many(hooks: tuple[certpoll.PollHook, ...]) -> None:
    """One ``Poller.poll`` and a ``poll_many`` of three orders, each issued at its second look."""
    answers: Iterator[certpoll.Done[str] | certpoll.Pending] = iter(
        [certpoll.Pending(), certpoll.Done("x")]
    )

    async def attempt() -> certpoll.Done[str] | certpoll.Pending:
        return next(answers)

    await certpoll.Poller(certpoll.BackoffPolicy(jitter=0), hooks=hooks).poll(attempt)
    async with fleet_digicert(FakeCertCentral(issue_on=2), hooks=hooks) as dc:
        statuses = await collect(certpoll.poll_many(dc, ["1000", "1001", "1002"]))
    assert [s.state for s in statuses] == [certpoll.OrderState.ISSUED] * 3


@pytest.mark.looptime
@pytest.mark.usefixtures("certpoll_level")
async def test_a_poll_takes_a_poll_id_only_when_a_hook_reads_its_records() -> None:
    logger.setLevel(logging.WARNING)  # the default hook discards every attempt here
    before = new_poll_id()
    await _one_poll_and_a_poll_many(())
    await _one_poll_and_a_poll_many((logging_hook,))
    assert new_poll_id() == before + 1  # nothing taken in between
    seen: list[certpoll.PollDetails] = []
    await _one_poll_and_a_poll_many((seen.append,))
    # One id per poll (the Poller's, and each order's in poll_many), on every record of it.
    by_poll = {d.poll_id: d.order_id for d in seen}
    assert sorted(by_poll, key=int) == list(range(before + 2, before + 6))
    assert sorted(map(str, by_poll.values())) == ["1000", "1001", "1002", "None"]
    assert len(seen) == 8
