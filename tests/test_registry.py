"""``connector_for`` picks each CA's connector; ``certpoll.instrumentation`` names the hooks."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import certpoll
from certpoll import instrumentation

from .helpers import (
    DIGICERT_API_KEY,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
)

UNUSED = Path("never-opened.pem")  # the connectors get a client, so no key pair is loaded

SETTINGS: dict[str, tuple[certpoll.CASettings, type[certpoll.Connector[certpoll.CASettings]]]] = {
    "digicert": (certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1), certpoll.DigiCert),
    "sectigo": (
        certpoll.SectigoSettings(
            customer_uri="acme",
            login=SECTIGO_LOGIN,
            password=SECTIGO_PASSWORD,
            org_id=1,
            cert_type=2,
        ),
        certpoll.Sectigo,
    ),
    "entrust": (
        certpoll.EntrustSettings(
            api_url="https://entrust.example",
            ca_id="CA-1",
            client_cert_path=UNUSED,
            client_key_path=UNUSED,
        ),
        certpoll.Entrust,
    ),
    "globalsign": (
        certpoll.GlobalSignSettings(
            api_url="https://globalsign.example",
            api_key=GLOBALSIGN_API_KEY,
            api_secret=GLOBALSIGN_API_SECRET,
            client_cert_path=UNUSED,
            client_key_path=UNUSED,
        ),
        certpoll.GlobalSign,
    ),
}


@pytest.mark.parametrize("ca", sorted(SETTINGS))
async def test_connector_for_builds_the_connector_of_the_settings(ca: str) -> None:
    settings, expected = SETTINGS[ca]
    poller = certpoll.Poller(max_wait=7.0)
    gate = certpoll.UpstreamGate()
    async with httpx.AsyncClient() as http:
        connector = certpoll.connector_for(settings, http=http, poller=poller, gate=gate)
        assert type(connector) is expected
        assert isinstance(connector, certpoll.Connector)
        assert connector.ca == ca
        assert connector.settings is settings
        assert connector.http is http
        assert connector.poller is poller
        assert connector.gate is gate
        await connector.aclose()
        assert not http.is_closed  # a client passed in is the caller's


def test_connector_for_refuses_settings_no_connector_takes() -> None:
    class Homegrown(certpoll.CASettings):
        pass

    with pytest.raises(certpoll.ConfigError, match="no connector takes Homegrown"):
        certpoll.connector_for(Homegrown())


def test_every_connector_revoke_takes_a_comment() -> None:
    import inspect

    for _, connector_type in SETTINGS.values():
        parameters = inspect.signature(connector_type.revoke).parameters
        assert parameters["comment"].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters["comment"].default is None


def test_instrumentation_names_the_same_objects_as_the_top_level() -> None:
    for name in instrumentation.__all__:
        if name != "AttemptOutcome":  # a type alias, only in the namespace
            assert getattr(instrumentation, name) is getattr(certpoll, name)
    assert {name for name in dir(instrumentation) if not name.startswith("_")} == set(
        instrumentation.__all__
    )
