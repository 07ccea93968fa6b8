"""Settings: arguments, both environment prefixes, .env, and errors that name the variable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import certpoll
from tests.helpers import DIGICERT_API_KEY, SECTIGO_LOGIN, SECTIGO_PASSWORD, leaked_secrets


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CERTPOLL_/CERTCTL_ variable of the machine and no .env leak into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_arguments() -> None:
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=123)
    assert settings.api_key.get_secret_value() == DIGICERT_API_KEY
    assert settings.product_type == "ssl_basic"
    assert settings.base_url == "https://www.digicert.com/services/v2"
    assert settings.poll_max_wait_seconds == 600
    assert settings.rate_limits == ((80, 5.0), (800, 180.0))


def test_certpoll_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", DIGICERT_API_KEY)
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "77")
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "86400")
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_JITTER", "0.1")
    monkeypatch.setenv("CERTPOLL_DIGICERT_RATE_LIMITS", "[[10, 1], [100, 60]]")
    settings = certpoll.DigiCertSettings()
    assert settings.org_id == 77
    assert settings.poll_max_wait_seconds == 86400
    assert settings.poll_jitter == 0.1
    assert settings.rate_limits == ((10, 1.0), (100, 60.0))


def test_the_seed_certctl_variables_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTCTL_SECTIGO_CUSTOMER_URI", "acme-org")
    monkeypatch.setenv("CERTCTL_SECTIGO_LOGIN", SECTIGO_LOGIN)
    monkeypatch.setenv("CERTCTL_SECTIGO_PASSWORD", SECTIGO_PASSWORD)
    monkeypatch.setenv("CERTCTL_SECTIGO_ORG_ID", "5")
    monkeypatch.setenv("CERTCTL_SECTIGO_CERT_TYPE", "9")
    monkeypatch.setenv("CERTCTL_SECTIGO_POLL_MAX_WAIT_SECONDS", "60")
    settings = certpoll.SectigoSettings()
    assert settings.customer_uri == "acme-org"
    assert settings.term == 365
    assert settings.poll_max_wait_seconds == 60


def test_certpoll_wins_over_certctl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTCTL_DIGICERT_API_KEY", "certctl-key")
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", DIGICERT_API_KEY)
    monkeypatch.setenv("CERTCTL_DIGICERT_ORG_ID", "1")
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "2")
    settings = certpoll.DigiCertSettings()
    assert settings.api_key.get_secret_value() == DIGICERT_API_KEY
    assert settings.org_id == 2


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "2")
    assert certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=3).org_id == 3


def test_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"CERTPOLL_DIGICERT_API_KEY={DIGICERT_API_KEY}\nCERTCTL_DIGICERT_ORG_ID=9\n"
    )
    settings = certpoll.DigiCertSettings()
    assert settings.org_id == 9


def test_zero_max_wait_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "0")
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    assert settings.poll_max_wait_seconds == 600


def test_unlimited_max_wait_is_spelled_inf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "inf")
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    assert math.isinf(settings.make_poller().max_wait)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "ten"),
        ("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "-5"),
        ("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "nan"),
        ("CERTCTL_DIGICERT_POLL_MAX_WAIT_SECONDS", "ten"),
        ("CERTPOLL_DIGICERT_POLL_INITIAL_WAIT_SECONDS", "-1"),
        ("CERTPOLL_DIGICERT_POLL_JITTER", "1.5"),
        ("CERTPOLL_DIGICERT_ATTEMPT_TIMEOUT_SECONDS", "0"),
        ("CERTPOLL_DIGICERT_POLL_MULTIPLIER", "0.5"),
        ("CERTPOLL_DIGICERT_RATE_LIMITS", "[[0, 5]]"),
        ("CERTPOLL_DIGICERT_RATE_LIMITS", "lots"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(certpoll.ConfigError) as caught:
        certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    assert variable in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert not leaked_secrets(str(caught.value))


def test_a_missing_field_names_both_variables() -> None:
    with pytest.raises(certpoll.ConfigError) as caught:
        certpoll.DigiCertSettings(org_id=1)
    message = str(caught.value)
    assert "CERTPOLL_DIGICERT_API_KEY is required" in message
    assert "CERTCTL_DIGICERT_API_KEY" in message


def test_a_bad_argument_names_the_argument() -> None:
    with pytest.raises(certpoll.ConfigError, match="org_id= argument"):
        certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id="acme")


def test_a_bad_value_from_dotenv_says_so(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CERTPOLL_DIGICERT_POLL_JITTER=lots\n")
    with pytest.raises(certpoll.ConfigError, match=r"CERTPOLL_DIGICERT_POLL_JITTER \(from .env\)"):
        certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)


def test_schedule_settings_must_fit_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_INITIAL_WAIT_SECONDS", "600")
    with pytest.raises(certpoll.ConfigError, match="POLL_MAX_BACKOFF_SECONDS"):
        certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)


def test_the_poller_follows_the_settings() -> None:
    settings = certpoll.DigiCertSettings(
        api_key=DIGICERT_API_KEY,
        org_id=1,
        poll_max_wait_seconds=60,
        poll_initial_wait_seconds=2,
        poll_multiplier=2,
        poll_max_backoff_seconds=10,
        poll_jitter=0,
        attempt_timeout_seconds=4,
    )
    poller = settings.make_poller()
    assert poller.max_wait == 60
    assert poller.attempt_timeout == 4
    assert poller.policy == certpoll.BackoffPolicy(
        initial_wait=2, multiplier=2, max_backoff=10, jitter=0
    )


def test_secrets_stay_out_of_repr_and_str() -> None:
    settings = certpoll.SectigoSettings(
        customer_uri="acme",
        login=SECTIGO_LOGIN,
        password=SECTIGO_PASSWORD,
        org_id=1,
        cert_type=2,
    )
    assert not leaked_secrets(repr(settings))
    assert not leaked_secrets(str(settings))
    assert not leaked_secrets(settings.model_dump_json())
    assert set(settings.secret_values()) == {SECTIGO_LOGIN, SECTIGO_PASSWORD}


def test_env_var_names() -> None:
    assert certpoll.EntrustSettings.env_var("ca_id") == "CERTPOLL_ENTRUST_CA_ID"
    assert certpoll.GlobalSignSettings.env_var("api_url") == "CERTPOLL_GLOBALSIGN_API_URL"


# -- what the user wrote is what the error names --------------------------------------------


@pytest.mark.parametrize("prefix", ["CERTPOLL_", "CERTCTL_"])
def test_a_bad_dotenv_line_is_named_as_written(prefix: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"{prefix}DIGICERT_API_KEY=k\n{prefix}DIGICERT_ORG_ID=1\n"
        f"{prefix}DIGICERT_POLL_MAX_WAIT_SECONDS=soon\n"
    )
    with pytest.raises(certpoll.ConfigError) as caught:
        certpoll.DigiCertSettings()
    assert f"{prefix}DIGICERT_POLL_MAX_WAIT_SECONDS (from .env)" in str(caught.value)
    other = "CERTCTL_" if prefix == "CERTPOLL_" else "CERTPOLL_"
    assert f"{other}DIGICERT_POLL_MAX_WAIT_SECONDS" not in str(caught.value)


@pytest.mark.parametrize(
    "name", ["certctl_digicert_poll_max_wait_seconds", "Certpoll_Digicert_Poll_Max_Wait_Seconds"]
)
@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_bad_variable_is_named_in_the_case_it_was_written(
    name: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if where == ".env":
        (tmp_path / ".env").write_text(f"{name}=soon\n")
    else:
        monkeypatch.setenv(name, "soon")
    with pytest.raises(certpoll.ConfigError) as caught:
        certpoll.DigiCertSettings(api_key="k", org_id=1)
    suffix = " (from .env)" if where == ".env" else ""
    assert f"{name}{suffix}: " in str(caught.value)


@pytest.mark.parametrize(
    ("settings_cls", "variable", "values"),
    [
        (
            certpoll.DigiCertSettings,
            "CERTPOLL_DIGICERT_BASE_URL",
            {"api_key": "k", "org_id": 1},
        ),
        (
            certpoll.SectigoSettings,
            "CERTPOLL_SECTIGO_BASE_URL",
            {"customer_uri": "c", "login": "l", "password": "p", "org_id": 1, "cert_type": 1},
        ),
    ],
)
@pytest.mark.parametrize(
    "url", ["dc.test/services/v2", "127.0.0.1:9", "ftp://dc.test", "https://", "//dc.test"]
)
def test_a_base_url_without_an_http_scheme_is_refused_naming_the_variable(
    settings_cls: type[certpoll.CASettings],
    variable: str,
    values: dict[str, object],
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(certpoll.ConfigError, match=variable):
        settings_cls(**values)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2-pass@dc.test/v2",
        "https://hunter2-pass@dc.test",
        "http://:hunter2-pass@[::1]:8/",
    ],
)
@pytest.mark.parametrize(
    ("settings_cls", "field", "values"),
    [
        (certpoll.DigiCertSettings, "base_url", {"api_key": "k", "org_id": 1}),
        (
            certpoll.GlobalSignSettings,
            "api_url",
            {"api_key": "k", "api_secret": "s", "client_cert_path": "/c", "client_key_path": "/k"},
        ),
    ],
)
def test_a_base_url_holding_a_password_is_refused_without_showing_it(
    settings_cls: type[certpoll.CASettings], field: str, values: dict[str, object], url: str
) -> None:
    # Shown in the settings' and the connector's repr and in EndpointNotFound's message.
    with pytest.raises(certpoll.ConfigError, match=f"{field}= argument") as caught:
        settings_cls(**values, **{field: url})
    assert "hunter2" not in str(caught.value) + repr(caught.value.__cause__)


def test_an_at_sign_in_the_path_of_a_base_url_is_no_password() -> None:
    settings = certpoll.DigiCertSettings(api_key="k", org_id=1, base_url="https://dc.test/@v2")
    assert settings.base_url == "https://dc.test/@v2"


def test_a_base_url_keeps_working_with_a_trailing_slash_and_spaces() -> None:
    settings = certpoll.DigiCertSettings(api_key="k", org_id=1, base_url=" http://127.0.0.1:8/v2/ ")
    assert settings.base_url == "http://127.0.0.1:8/v2"


# -- credentials are normalised as they load -------------------------------------------------


@pytest.mark.parametrize("around", ["\n", "\r\n", " ", "\t", " \n\n", "\u00a0"])
def test_whitespace_around_a_credential_is_stripped(
    around: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What ``kubectl create secret --from-file`` and ``echo key > file`` give.
    monkeypatch.setenv("CERTPOLL_SECTIGO_PASSWORD", SECTIGO_PASSWORD + around)
    settings = certpoll.SectigoSettings(
        customer_uri="c", login=around + SECTIGO_LOGIN, org_id=1, cert_type=1
    )
    assert settings.password.get_secret_value() == SECTIGO_PASSWORD
    assert settings.login.get_secret_value() == SECTIGO_LOGIN
    assert settings.secret_values() == (SECTIGO_LOGIN, SECTIGO_PASSWORD)


@pytest.mark.parametrize("inside", ["\n", "\r", "\x00", "\x1b", "\x7f", "\x85"])
def test_a_control_character_inside_a_credential_is_refused_without_showing_it(
    inside: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = DIGICERT_API_KEY[:8] + inside + DIGICERT_API_KEY[8:]
    with pytest.raises(certpoll.ConfigError, match="api_key= argument") as given:
        certpoll.DigiCertSettings(org_id=1, api_key=key)
    errors = [given.value]
    if inside != "\x00":  # the environment cannot hold a NUL
        monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", key)
        with pytest.raises(certpoll.ConfigError, match="CERTPOLL_DIGICERT_API_KEY") as read:
            certpoll.DigiCertSettings(org_id=1)
        errors.append(read.value)
    for error in errors:
        text = str(error) + repr(error)
        assert DIGICERT_API_KEY[:8] not in text
        assert DIGICERT_API_KEY[8:] not in text
        assert "control character" in text


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("api_key", "CERTPOLL_DIGICERT_API_KEY"),
        ("login", "CERTPOLL_SECTIGO_LOGIN"),
        ("password", "CERTPOLL_SECTIGO_PASSWORD"),
    ],
)
@pytest.mark.parametrize("inside", ["\u00e9", "\u200b", "\u2028", "\ufeff", "\U0001f511"])
def test_a_header_credential_that_is_not_ascii_is_refused_without_showing_it(
    field: str, variable: str, inside: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx cannot encode it in a header: its UnicodeEncodeError would carry the whole value.
    secret = SECTIGO_PASSWORD[:8] + inside + SECTIGO_PASSWORD[8:]
    monkeypatch.setenv(variable, secret)
    factory = certpoll.DigiCertSettings if field == "api_key" else certpoll.SectigoSettings
    others = {"org_id": 1, "cert_type": 1, "customer_uri": "c", "login": "l", "password": "p"}
    others.pop(field, None)
    with pytest.raises(certpoll.ConfigError, match=variable) as error:
        factory(**others)  # type: ignore[arg-type]
    text = str(error.value) + repr(error.value) + repr(error.value.__cause__)
    assert "only ASCII" in text
    assert SECTIGO_PASSWORD[:8] not in text
    assert SECTIGO_PASSWORD[8:] not in text


def test_a_credential_sent_in_a_json_body_may_be_any_unicode() -> None:
    settings = certpoll.GlobalSignSettings(
        api_key="cl\u00e9-\u2028-\U0001f511",
        api_secret="s",
        client_cert_path=Path("/x.crt"),
        client_key_path=Path("/x.key"),
    )
    assert settings.api_key.get_secret_value() == "cl\u00e9-\u2028-\U0001f511"


@pytest.mark.parametrize("value", ["", " ", "\n", "\r\n\t "])
def test_an_empty_credential_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty secret file: sending an empty key would only get a 401 much later.
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", value)
    with pytest.raises(certpoll.ConfigError, match="CERTPOLL_DIGICERT_API_KEY: is empty"):
        certpoll.DigiCertSettings(org_id=1)


@pytest.mark.parametrize("around", ["\n", " \r\n"])
def test_sectigos_customer_uri_is_a_header_value_too(around: str) -> None:
    values = {"login": "l", "password": "p", "org_id": 1, "cert_type": 1}
    settings = certpoll.SectigoSettings(customer_uri=f"acme{around}", **values)  # type: ignore[arg-type]
    assert settings.customer_uri == "acme"
    with pytest.raises(certpoll.ConfigError, match="customer_uri= argument: holds a control"):
        certpoll.SectigoSettings(customer_uri=f"ac{around}me", **values)  # type: ignore[arg-type]
