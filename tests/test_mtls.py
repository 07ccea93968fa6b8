"""MTLSTransport and mtls_mounts against a real TLS server that requires a client certificate.

Ports the reference's mTLS cache checklist (certctl-behaviour.md section 5): missing paths,
immediate load, no reload while unchanged, reload on change, a stat error surfaces, many
concurrent callers, the TLS 1.2 minimum; and goes past it: a change of the key file alone is
seen, a failed reload keeps the old pair, replaced transports are closed. (The reference's
"custom TLS builder" and "client timeout" items have no equivalent: the context is ours and
timeouts belong to the httpx client.)
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import certpoll
from certpoll._mtls import MTLSTransport
from tests.helpers import GLOBALSIGN_API_KEY, GLOBALSIGN_API_SECRET, GLOBALSIGN_TOKEN
from tests.tls_helpers import (
    ClientFiles,
    MTLSServer,
    Seen,
    TLSAuthority,
    bump_mtime,
    write_padded,
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MTLSServer]:
    async with MTLSServer(tmp_path) as running:
        yield running


@pytest.fixture
def client_files(server: MTLSServer) -> ClientFiles:
    return server.write_client()


def transport_for(server: MTLSServer, files: ClientFiles) -> MTLSTransport:
    return MTLSTransport(files.cert_path, files.key_path, server_ca_path=server.server_ca_path)


async def serial_seen(http: httpx.AsyncClient, url: str) -> int:
    response = await http.get(url + "/whoami")
    response.raise_for_status()
    serial = response.json()["serial"]
    assert isinstance(serial, int)
    return serial


async def test_a_shared_client_presents_the_client_certificate(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        assert await serial_seen(http, server.url) == client_files.serial
    assert server.client_serials == [client_files.serial]


async def test_both_chains_pass_strict_verification_on_every_python(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    # Python 3.13 verifies with VERIFY_X509_STRICT by default (the server here always does):
    # a client holding the server's chain to it too proves the test PKI strict-valid anywhere.
    context = ssl.create_default_context(cafile=str(server.server_ca_path))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(client_files.cert_path, client_files.key_path)
    async with httpx.AsyncClient(verify=context) as http:
        assert await serial_seen(http, server.url) == client_files.serial


async def test_without_the_client_certificate_the_server_refuses(server: MTLSServer) -> None:
    context = ssl.create_default_context(cafile=str(server.server_ca_path))
    async with httpx.AsyncClient(verify=context) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(server.url + "/whoami")
    assert server.seen == []


async def test_only_the_mounted_origin_gets_the_transport(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    mounts: dict[str, httpx.AsyncBaseTransport] = {server.url: transport_for(server, client_files)}
    other = httpx.MockTransport(lambda request: httpx.Response(204))
    async with httpx.AsyncClient(mounts=mounts, transport=other) as http:
        assert (await http.get("https://elsewhere.example/x")).status_code == 204
        assert await serial_seen(http, server.url) == client_files.serial


async def test_a_new_certificate_for_the_same_key_is_presented(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        assert await serial_seen(http, server.url) == client_files.serial
        renewed = server.write_client(key=client_files.key)  # rewrites the cert, same key
        assert renewed.key_path.read_bytes() == client_files.key_path.read_bytes()
        bump_mtime(renewed.cert_path)
        assert await serial_seen(http, server.url) == renewed.serial
    assert transport.reloads == 1


async def test_a_change_seen_only_in_the_key_file_reloads_the_pair(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    # The certificate file is rewritten in place with its size and mtime kept (as `cp -p`
    # would): only the key file's change reveals the rotation. The reference watched only
    # the certificate's mtime and kept presenting the old pair here.
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        assert await serial_seen(http, server.url) == client_files.serial
        before = client_files.cert_path.stat()
        rotated = server.write_client()
        os.utime(rotated.cert_path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = rotated.cert_path.stat()
        assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
            before.st_mtime_ns,
            before.st_size,
            before.st_ino,
        )
        bump_mtime(rotated.key_path)
        assert await serial_seen(http, server.url) == rotated.serial
    assert transport.reloads == 1


async def test_no_reload_while_the_files_are_unchanged(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        for _ in range(20):
            await serial_seen(http, server.url)
    assert transport.reloads == 0
    assert set(server.client_serials) == {client_files.serial}


async def test_many_concurrent_requests_reload_once(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        await serial_seen(http, server.url)
        rotated = server.write_client(key=client_files.key)
        bump_mtime(rotated.cert_path)
        serials = await asyncio.gather(*(serial_seen(http, server.url) for _ in range(50)))
    assert set(serials) == {rotated.serial}
    assert transport.reloads == 1


async def test_a_failed_reload_keeps_the_old_pair_and_is_transient(
    server: MTLSServer, client_files: ClientFiles, caplog: pytest.LogCaptureFixture
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        await serial_seen(http, server.url)
        # Half a rotation: a new certificate whose key has not been written yet.
        half = server.write_client(name="half")
        write_padded(client_files.cert_path, half.cert_path.read_bytes().rstrip(b"\n") + b"\n")
        bump_mtime(client_files.cert_path)
        for _ in range(2):
            with pytest.raises(httpx.ConnectError, match="request not sent") as caught:
                await http.get(server.url + "/whoami")
            assert isinstance(caught.value.__cause__, ssl.SSLError)
        warnings = [r for r in caplog.records if "mtls_reload_failed" in r.getMessage()]
        assert len(warnings) == 1  # once per state of the files, not once per request
        assert transport.reloads == 0
        # The key arrives: the next request presents the new pair.
        client_files.key_path.write_bytes(half.key_path.read_bytes())
        bump_mtime(client_files.key_path)
        assert await serial_seen(http, server.url) == half.serial
    assert server.client_serials == [client_files.serial, half.serial]


async def test_a_missing_file_during_rotation_is_transient(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        await serial_seen(http, server.url)
        content = client_files.cert_path.read_bytes()
        client_files.cert_path.unlink()
        with pytest.raises(httpx.ConnectError, match="FileNotFoundError"):
            await http.get(server.url + "/whoami")
        client_files.cert_path.write_bytes(content)
        assert await serial_seen(http, server.url) == client_files.serial


async def test_through_a_connector_a_failed_reload_is_pending(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    settings = certpoll.GlobalSignSettings(
        api_url=server.url,
        api_key=SecretStr(GLOBALSIGN_API_KEY),
        api_secret=SecretStr(GLOBALSIGN_API_SECRET),
        client_cert_path=client_files.cert_path,
        client_key_path=client_files.key_path,
        server_ca_path=server.server_ca_path,
    )
    async with httpx.AsyncClient(mounts=certpoll.mtls_mounts(settings)) as http:
        connector = certpoll.GlobalSign(settings, http=http)
        client_files.cert_path.write_bytes(b"not a certificate")
        outcome = await connector.poll_once("0123")
    assert isinstance(outcome, certpoll.Pending)
    assert isinstance(outcome.error, certpoll.TransientError)
    assert server.seen == []


async def test_a_replaced_transport_is_closed_when_its_last_response_is(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        first = transport._current
        async with http.stream("GET", server.url + "/whoami") as streaming:
            rotated = server.write_client(key=client_files.key)
            bump_mtime(rotated.cert_path)
            assert await serial_seen(http, server.url) == rotated.serial
            assert first.retired
            assert not first.closed
            await streaming.aread()
        assert first.closed
        second = transport._current
        assert not second.closed
    assert second.closed  # the client's close closes the mounted transport


async def test_a_replaced_idle_transport_is_closed_at_once(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        await serial_seen(http, server.url)
        first = transport._current
        bump_mtime(client_files.cert_path)
        await serial_seen(http, server.url)
        assert first.closed
        assert transport._retired == []


async def test_a_request_that_fails_releases_its_transport(
    server: MTLSServer, client_files: ClientFiles
) -> None:
    transport = transport_for(server, client_files)
    request = httpx.Request("GET", "https://127.0.0.1:1/unreachable")
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(request)
    assert transport._current.in_flight == 0
    await transport.aclose()


async def test_pinning_an_unrelated_ca_fails_the_handshake(
    server: MTLSServer, client_files: ClientFiles, tmp_path: Path
) -> None:
    unrelated = TLSAuthority("unrelated").write_root(tmp_path / "unrelated-ca.pem")
    transport = MTLSTransport(
        client_files.cert_path, client_files.key_path, server_ca_path=unrelated
    )
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(server.url + "/whoami")
    assert server.seen == []


async def test_a_pinned_ca_is_the_only_trust_root(
    server: MTLSServer, client_files: ClientFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Even with the server's CA in the environment's trust store, the pin alone decides.
    monkeypatch.setenv("SSL_CERT_FILE", str(server.server_ca_path))
    unrelated = TLSAuthority("unrelated").write_root(tmp_path / "unrelated-ca.pem")
    context = MTLSTransport(
        client_files.cert_path, client_files.key_path, server_ca_path=unrelated
    ).ssl_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1


async def test_without_a_pin_the_usual_trust_store_is_used(
    server: MTLSServer, client_files: ClientFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(server.server_ca_path))
    transport = MTLSTransport(client_files.cert_path, client_files.key_path)
    assert transport.ssl_context().minimum_version == ssl.TLSVersion.TLSv1_2
    async with httpx.AsyncClient(mounts={server.url: transport}) as http:
        assert await serial_seen(http, server.url) == client_files.serial


def test_missing_or_bad_files_are_a_config_error(tmp_path: Path, client_files: ClientFiles) -> None:
    with pytest.raises(certpoll.ConfigError, match=r"missing\.crt"):
        MTLSTransport(tmp_path / "missing.crt", client_files.key_path)
    with pytest.raises(certpoll.ConfigError, match=r"missing\.key"):
        MTLSTransport(client_files.cert_path, tmp_path / "missing.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("no certificates here")
    with pytest.raises(certpoll.ConfigError, match="server CA"):
        MTLSTransport(client_files.cert_path, client_files.key_path, server_ca_path=garbage)
    with pytest.raises(certpoll.ConfigError):
        MTLSTransport(garbage, client_files.key_path)


def test_repr_names_the_files_only(client_files: ClientFiles) -> None:
    text = repr(MTLSTransport(client_files.cert_path, client_files.key_path))
    assert str(client_files.cert_path) in text
    assert "server_ca_path=None" in text


# -- mtls_mounts ----------------------------------------------------------------------------


def entrust_settings(
    files: ClientFiles, url: str = "https://cagw.example/cagw"
) -> certpoll.EntrustSettings:
    return certpoll.EntrustSettings(
        api_url=url,
        client_cert_path=files.cert_path,
        client_key_path=files.key_path,
        ca_id="CA-1",
    )


def globalsign_settings(
    files: ClientFiles, server_ca: Path | None = None
) -> certpoll.GlobalSignSettings:
    return certpoll.GlobalSignSettings(
        api_key=SecretStr(GLOBALSIGN_API_KEY),
        api_secret=SecretStr(GLOBALSIGN_API_SECRET),
        client_cert_path=files.cert_path,
        client_key_path=files.key_path,
        server_ca_path=server_ca,
    )


def test_mtls_mounts_gives_one_transport_per_origin(
    client_files: ClientFiles, server: MTLSServer
) -> None:
    mounts = certpoll.mtls_mounts(
        entrust_settings(client_files),
        entrust_settings(client_files, "https://cagw.example/other"),
        globalsign_settings(client_files, server.server_ca_path),
    )
    assert set(mounts) == {"https://cagw.example", "https://emea.api.hvca.globalsign.com:8443"}
    globalsign = mounts["https://emea.api.hvca.globalsign.com:8443"]
    assert isinstance(globalsign, MTLSTransport)
    assert globalsign.server_ca_path == server.server_ca_path


def test_mtls_mounts_refuses_two_pairs_for_one_origin(
    client_files: ClientFiles, server: MTLSServer
) -> None:
    other = server.write_client(name="other")
    with pytest.raises(certpoll.ConfigError, match="two different"):
        certpoll.mtls_mounts(entrust_settings(client_files), entrust_settings(other))


def test_mtls_mounts_names_the_variables_of_a_bad_file(
    tmp_path: Path, client_files: ClientFiles
) -> None:
    settings = certpoll.GlobalSignSettings(
        api_key=SecretStr(GLOBALSIGN_API_KEY),
        api_secret=SecretStr(GLOBALSIGN_API_SECRET),
        client_cert_path=tmp_path / "nope.crt",
        client_key_path=client_files.key_path,
        server_ca_path=tmp_path / "nope-ca.pem",
    )
    with pytest.raises(certpoll.ConfigError) as caught:
        certpoll.mtls_mounts(settings)
    message = str(caught.value)
    assert "CERTPOLL_GLOBALSIGN_CLIENT_CERT_PATH" in message
    assert "CERTPOLL_GLOBALSIGN_SERVER_CA_PATH" in message
    assert "nope.crt" in message


async def test_entrust_without_http_mounts_its_own_transport(
    server: MTLSServer, client_files: ClientFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b'{"trackingId": "T-1", "status": "PENDING"}'

    server.handler = handler
    monkeypatch.setenv("SSL_CERT_FILE", str(server.server_ca_path))
    async with certpoll.Entrust(entrust_settings(client_files, server.url + "/cagw")) as entrust:
        outcome = await entrust.poll_once("T-1")
    assert outcome == certpoll.Pending(detail="enrollment T-1 is PENDING")
    assert server.seen[0].path == "/cagw/v1/certificate-authorities/CA-1/enrollments/T-1"
    assert server.client_serials == [client_files.serial]


async def test_connectors_share_one_client_with_mtls_mounts(
    server: MTLSServer,
    client_files: ClientFiles,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def handler(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path = seen.path
        if path.endswith("/login"):
            return 200, {}, json.dumps({"access_token": GLOBALSIGN_TOKEN}).encode()
        if "/certificates/" in path:
            return 202, {}, b""
        return 200, {}, b'{"trackingId": "T-1", "status": "PROCESSING"}'

    server.handler = handler
    monkeypatch.setenv("SSL_CERT_FILE", str(server.server_ca_path))
    (tmp_path / "gs").mkdir()
    gs_server = MTLSServer(
        tmp_path / "gs", handler=handler, server_ca=server.server_ca, client_ca=server.client_ca
    )
    async with gs_server:
        entrust_s = entrust_settings(client_files, server.url + "/cagw")
        globalsign_s = certpoll.GlobalSignSettings(
            api_url=gs_server.url + "/v2",
            api_key=SecretStr(GLOBALSIGN_API_KEY),
            api_secret=SecretStr(GLOBALSIGN_API_SECRET),
            client_cert_path=client_files.cert_path,
            client_key_path=client_files.key_path,
            server_ca_path=gs_server.server_ca_path,
        )
        mounts = certpoll.mtls_mounts(entrust_s, globalsign_s)
        assert set(mounts) == {server.url, gs_server.url}
        async with httpx.AsyncClient(mounts=mounts) as http:
            entrust = certpoll.Entrust(entrust_s, http=http)
            globalsign = certpoll.GlobalSign(globalsign_s, http=http)
            assert isinstance(await entrust.poll_once("T-1"), certpoll.Pending)
            assert isinstance(await globalsign.poll_once("0A1B"), certpoll.Pending)
            await entrust.aclose()
            await globalsign.aclose()
            assert not http.is_closed
    assert [s.path for s in server.seen] == [
        "/cagw/v1/certificate-authorities/CA-1/enrollments/T-1"
    ]
    assert [s.path for s in gs_server.seen] == ["/v2/login", "/v2/certificates/0A1B"]
    assert gs_server.seen[1].headers["authorization"] == f"Bearer {GLOBALSIGN_TOKEN}"
    assert set(server.client_serials + gs_server.client_serials) == {client_files.serial}
