"""What every connector inherits from ``certpoll._connector.Connector``."""

from __future__ import annotations

import gzip
from typing import ClassVar

import httpx
import pytest

import certpoll
from certpoll import _connector
from certpoll._connector import Connector, path_segment
from certpoll._triage import Triage
from tests.certs import make_csr
from tests.helpers import DIGICERT_API_KEY, FakeTime

REQUEST = certpoll.CertificateRequest(
    common_name="www.example.com", csr_pem=make_csr("www.example.com")
)


class Plain(Connector[certpoll.DigiCertSettings]):
    """The smallest connector: one status request, answers decided by the test."""

    ca: ClassVar[certpoll.CAName] = "digicert"

    @property
    def base_url(self) -> str:
        return "https://ca.test/api"

    def _make_triage(self) -> Triage:
        def not_ready(response: httpx.Response) -> str | None:
            return "try later" if b"not ready" in response.content else None

        return Triage(
            ca=self.ca,
            redact=self.redact,
            pending_status_codes=frozenset({202}),
            not_ready=not_ready,
        )

    async def issue(self, request: certpoll.CertificateRequest) -> certpoll.OrderStatus:
        response = await self._submit(
            self.http.build_request("POST", self.url("orders")), certificate_request=request
        )
        return certpoll.OrderStatus(
            ca=self.ca, order_id=response.text, state=certpoll.OrderState.PENDING
        )

    async def poll_once(
        self, order_id: str
    ) -> certpoll.Done[certpoll.OrderStatus] | certpoll.Pending | certpoll.Failed:
        sent = await self._send(
            self.http.build_request("GET", self.url("orders", path_segment(order_id))),
            order_id=order_id,
        )
        if not isinstance(sent, httpx.Response):
            return sent
        return certpoll.Pending(detail=sent.text or None)

    async def revoke(
        self,
        certificate: certpoll.Certificate | str,
        *,
        reason: certpoll.RevocationReason = certpoll.RevocationReason.UNSPECIFIED,
    ) -> None:
        raise NotImplementedError


def connector(handler: httpx.MockTransport | None = None) -> Plain:
    settings = certpoll.DigiCertSettings(
        api_key=DIGICERT_API_KEY, org_id=1, poll_max_wait_seconds=1
    )
    http = None if handler is None else httpx.AsyncClient(transport=handler)
    return Plain(settings, http=http)


async def test_a_202_on_submit_is_an_accepted_order() -> None:
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(202, text="17")))
    status = await plain.issue(REQUEST)
    assert status.order_id == "17"


async def test_a_not_ready_answer_on_submit_is_a_refusal() -> None:
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(400, text="not ready")))
    with pytest.raises(certpoll.PermanentError, match="was refused: HTTP 400") as caught:
        await plain.issue(REQUEST)
    assert caught.value.status_code == 400
    assert not isinstance(caught.value, certpoll.SubmissionUncertain)


async def test_reading_stops_at_the_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connector, "MAX_RESPONSE_BYTES", 1000)
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 5000)))
    outcome = await plain.poll_once("1")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert "larger than 1000 bytes" in str(outcome.error)
    with pytest.raises(certpoll.SubmissionUncertain):
        await plain.issue(REQUEST)


async def test_a_compressed_body_is_decoded_once() -> None:
    body = gzip.compress(b"validating")
    plain = connector(
        httpx.MockTransport(
            lambda request: httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})
        )
    )
    assert await plain.poll_once("1") == certpoll.Pending(detail="validating")


async def test_a_client_passed_in_is_never_closed() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    async with Plain(settings, http=http):
        pass
    assert not http.is_closed
    await http.aclose()


async def test_a_client_it_created_is_closed() -> None:
    plain = connector()
    async with plain:
        assert not plain.http.is_closed
    assert plain.http.is_closed


async def test_still_pending_falls_back_to_a_plain_message(fake_time: FakeTime) -> None:
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(200, text="")))
    plain.poller = fake_time.poller(max_wait=30)
    status = await plain.get_order_status("5")
    assert status.state is certpoll.OrderState.PENDING
    assert status.message == "order 5 still pending after PollMaxWait"


@pytest.mark.parametrize(
    ("value", "escaped"),
    [("12", "12"), ("a/b", "a%2Fb"), ("a?b#c", "a%3Fb%23c"), ("%2F", "%252F"), ("../x", "..%2Fx")],
)
def test_path_segment_escapes(value: str, escaped: str) -> None:
    assert path_segment(value) == escaped


@pytest.mark.parametrize("value", ["", ".", "..", "a\nb", "x" * 257])
def test_path_segment_refuses(value: str) -> None:
    with pytest.raises(certpoll.ConfigError):
        path_segment(value)


def test_path_segment_needs_a_string() -> None:
    with pytest.raises(certpoll.ConfigError, match="must be a string"):
        path_segment(12)  # type: ignore[arg-type]
