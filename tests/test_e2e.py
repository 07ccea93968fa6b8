"""End to end: each connector against the simulated CA, over real HTTPS on 127.0.0.1.

Time is virtual: the simulator, the Poller and the gate share one FakeTime clock, so hours
of approval pass in no real time while every request crosses a real TLS socket.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import certpoll
from certpoll.testing import BodyFault, OrderScript, ServedCA, SimulatedCA, serve
from tests.certs import make_csr
from tests.credentials import CREDENTIALS
from tests.helpers import FakeTime, assert_no_secrets


@dataclass
class World:
    sim: SimulatedCA
    served: ServedCA
    http: httpx.AsyncClient
    time: FakeTime

    def connector(
        self, ca: certpoll.CAName, **options: object
    ) -> certpoll.Connector[certpoll.CASettings]:
        """A connector of ``ca`` signed in to the test accounts, on the shared client and fake
        time; ``options`` are further settings fields."""
        served, time = self.served, self.time
        settings = CREDENTIALS.settings(
            ca,
            served.base_urls[ca],
            client_cert_path=served.client_cert_path,
            client_key_path=served.client_key_path,
            **options,
        )
        return certpoll.connector_for(
            settings,
            http=self.http,
            poller=settings.make_poller(clock=time.clock, sleep=time.sleep),
            gate=certpoll.UpstreamGate(
                rate_limits=settings.rate_limits, clock=time.clock, sleep=time.sleep
            ),
        )


@pytest.fixture
async def world(fake_time: FakeTime) -> AsyncIterator[World]:
    fake_time.now = 1000.0
    sim = SimulatedCA(credentials=CREDENTIALS, clock=fake_time.clock, sleep=fake_time.sleep)
    async with serve(sim) as served:
        assert served.ca_cert_path is not None
        assert served.client_cert_path is not None
        assert served.client_key_path is not None
        mtls_origin = served.base_urls.entrust.split("/entrust")[0]
        mounts: dict[str, httpx.AsyncBaseTransport] = {
            mtls_origin: certpoll.MTLSTransport(
                served.client_cert_path,
                served.client_key_path,
                server_ca_path=served.ca_cert_path,
            )
        }
        verify = ssl.create_default_context(cafile=str(served.ca_cert_path))
        async with httpx.AsyncClient(verify=verify, mounts=mounts) as http:
            yield World(sim, served, http, fake_time)


def request(common_name: str) -> certpoll.CertificateRequest:
    return certpoll.CertificateRequest(
        common_name=common_name, csr_pem=make_csr(common_name), sans=[f"www.{common_name}"]
    )


def check_issued(
    world: World, ca: certpoll.CAName, status: certpoll.OrderStatus
) -> certpoll.Certificate:
    assert status.state is certpoll.OrderState.ISSUED, status
    certificate = status.certificate
    assert certificate is not None
    issued = world.sim.order(ca, status.order_id)
    assert issued.certificate is not None
    assert certificate.serial == str(issued.serial)  # decimal, for every CA
    assert certificate.not_before == issued.certificate.not_valid_before_utc
    assert certificate.not_after == issued.certificate.not_valid_after_utc
    assert certificate.chain_pem.count("BEGIN CERTIFICATE") >= 1
    return certificate


async def test_digicert_end_to_end(world: World) -> None:
    world.sim.script_next(OrderScript(approval_for=3600, issue_after=120, errors=(429, 503)))
    async with world.connector("digicert") as dc:
        order = await dc.issue(request("dc.example.com"))
        assert order.state is certpoll.OrderState.PENDING
        status = await dc.get_order_status(order.order_id)
        assert status.state is certpoll.OrderState.PENDING  # an hour of approval > PollMaxWait
        world.time.now += 3600
        status = await dc.get_order_status(order.order_id)
        certificate = check_issued(world, "digicert", status)
        assert (
            certificate.ca_certificate_id
            == world.sim.order("digicert", order.order_id).certificate_id
        )
        await dc.revoke(certificate, reason=certpoll.RevocationReason.KEY_COMPROMISE)
    info = world.sim.order("digicert", order.order_id)
    assert info.state == "revoked"
    assert info.revocation_reason == "key_compromise"
    assert world.sim.requests_by_route["digicert.download"] == 1
    assert world.sim.throttled == 1


async def test_digicert_rejected_and_unknown(world: World) -> None:
    world.sim.script_next(OrderScript(issue_after=30, reject=True))
    async with world.connector("digicert") as dc:
        order = await dc.issue(request("no.example.com"))
        status = await dc.get_order_status(order.order_id)
        assert status.state is certpoll.OrderState.FAILED
        with pytest.raises(certpoll.OrderNotFound) as caught:
            await dc.get_order_status("999999")
    async with world.connector("digicert", api_key="wrong") as dc:
        with pytest.raises(certpoll.AuthenticationError) as denied:
            await dc.get_order_status(order.order_id)
    assert_no_secrets(caught.value, denied.value)


async def test_sectigo_end_to_end(world: World) -> None:
    world.sim.script_next(
        OrderScript(approval_for=60, issue_after=60, collect_not_ready_for=300, errors=(503,))
    )
    async with world.connector("sectigo") as sc:
        order = await sc.issue(request("sc.example.com"))
        assert order.state is certpoll.OrderState.PENDING
        status = await sc.get_order_status(order.order_id)
        certificate = check_issued(world, "sectigo", status)
        assert certificate.ca_certificate_id == order.order_id
        await sc.revoke(certificate, reason=certpoll.RevocationReason.SUPERSEDED)
    assert world.sim.order("sectigo", order.order_id).state == "revoked"
    # The 503, then a collect that was not ready (HTTP 400, -183), then success.
    assert world.sim.responses_by_status[503] == 1
    assert world.sim.responses_by_status[400] >= 1
    assert world.sim.requests_by_route["sectigo.collect"] >= 2


async def test_entrust_end_to_end(world: World) -> None:
    world.sim.script_next(
        OrderScript(approval_for=200, issue_after=10, errors=(429,), retry_after=30)
    )
    async with world.connector("entrust") as en:
        order = await en.issue(request("en.example.com"))
        assert order.state is certpoll.OrderState.PENDING
        status = await en.get_order_status(order.order_id)
        certificate = check_issued(world, "entrust", status)
        await en.revoke(certificate, reason=certpoll.RevocationReason.KEY_COMPROMISE)
    info = world.sim.order("entrust", order.order_id)
    assert (info.state, info.revocation_reason) == ("revoked", "keyCompromise")
    assert world.sim.throttled == 1


async def test_globalsign_end_to_end(world: World) -> None:
    world.sim.script_next(OrderScript(issue_after=900, errors=(BodyFault.NOT_JSON,)))
    world.sim.script_next(OrderScript(issue_after=30))
    gs_connector = world.connector(
        "globalsign", server_ca_path=world.served.ca_cert_path, poll_max_wait_seconds=3600
    )
    async with gs_connector as gs:
        broken = await gs.issue(request("broken.example.com"))
        with pytest.raises(certpoll.ResponseParseError):
            await gs.get_order_status(broken.order_id)
        order = await gs.issue(request("gs.example.com"))
        assert order.state is certpoll.OrderState.PENDING
        status = await gs.get_order_status(order.order_id)
        certificate = check_issued(world, "globalsign", status)
        assert int(certificate.ca_certificate_id, 16) == int(certificate.serial)
        world.sim.expire_tokens()  # the next request gets a 401, logs in again, resends
        await gs.revoke(certificate, reason=certpoll.RevocationReason.SUPERSEDED)
        # Past the token's life (the longer order): the connector renews it on its own.
        status = await gs.get_order_status(broken.order_id)
        check_issued(world, "globalsign", status)
    assert world.sim.order("globalsign", order.order_id).state == "revoked"
    assert world.sim.requests_by_route["globalsign.login"] >= 3


@pytest.mark.parametrize(
    ("script", "words"),
    [
        (OrderScript(issue_after=900), "being issued"),
        (OrderScript(approval_for=3600, issue_after=60), "awaiting approval"),
    ],
)
async def test_globalsign_keeps_the_words_of_its_202_end_to_end(
    world: World, script: OrderScript, words: str
) -> None:
    """HVCA's 202 carries a problem+json ``description``: the pending message keeps it."""
    world.sim.script_next(script, ca="globalsign")
    connector = world.connector("globalsign", server_ca_path=world.served.ca_cert_path)
    async with connector as gs:
        order = await gs.issue(request("words.example.com"))
        outcome = await gs.poll_once(order.order_id)
    assert isinstance(outcome, certpoll.Pending)
    assert outcome.detail == f"HTTP 202: certificate is {words}"


async def test_globalsign_refusal_is_a_failed_order_end_to_end(world: World) -> None:
    """A request HVCA's backend refuses is looked up 422 "CA validation error": FAILED."""
    world.sim.script_next(OrderScript(issue_after=30, reject=True), ca="globalsign")
    connector = world.connector("globalsign", server_ca_path=world.served.ca_cert_path)
    async with connector as gs:
        order = await gs.issue(request("refused.example.com"))
        status = await gs.get_order_status(order.order_id)
    assert status.state is certpoll.OrderState.FAILED
    assert status.message == (
        f"certificate {order.order_id} was rejected: HTTP 422: CA validation error"
    )


@pytest.mark.parametrize("ca", ["digicert", "sectigo", "entrust"])
@pytest.mark.parametrize("awkward", [False, True])
async def test_real_answer_shapes_end_to_end(
    world: World, ca: certpoll.CAName, awkward: bool
) -> None:
    """Issued at once in the CA's real shapes (awkward: root-first SCM bundles, CAGW's
    ACCEPTED): the leaf is the order's, the chain runs from its issuer to the root."""
    world.sim.script_next(OrderScript(awkward=awkward), ca=ca)
    async with world.connector(ca) as conn:
        order = await conn.issue(request(f"{ca}.shapes.example.com"))
        certificate = check_issued(world, ca, order)
    chain = [c.public_bytes(Encoding.PEM).decode() for c in world.sim.pki.chain]
    assert certificate.chain_pem == "".join(chain)
    if ca == "digicert":
        # The certificate came in the order's own answer: nothing was downloaded.
        assert world.sim.requests_by_route["digicert.download"] == 0
    if ca == "entrust":
        assert order.order_id == format(world.sim.order(ca, order.order_id).serial, "x")


async def test_entrust_held_enrollment_keeps_its_id_end_to_end(world: World) -> None:
    """An enrollment held for approval has no serial yet: it is looked up by its id."""
    world.sim.script_next(OrderScript(approval_for=120), ca="entrust")
    async with world.connector("entrust") as conn:
        order = await conn.issue(request("held.example.com"))
        assert order.state is certpoll.OrderState.PENDING
        assert order.order_id.startswith("ENR-")
        status = await conn.get_order_status(order.order_id)
        check_issued(world, "entrust", status)
    assert world.sim.requests_by_route["entrust.status"] >= 2
