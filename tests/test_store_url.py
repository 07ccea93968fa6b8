"""The ``store_url`` setting: per CA, shared by every CA, both prefixes, and its checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from certpoll import ConfigError, DigiCertSettings, SectigoSettings
from certpoll._cli import main
from tests.helpers import DIGICERT_API_KEY

VARIABLES = (
    "CERTPOLL_STORE_URL",
    "CERTCTL_STORE_URL",
    "CERTPOLL_DIGICERT_STORE_URL",
    "CERTCTL_DIGICERT_STORE_URL",
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def digicert() -> DigiCertSettings:
    return DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)


def test_no_store_is_configured_by_default() -> None:
    assert digicert().store_url is None


@pytest.mark.parametrize("prefix", ["CERTPOLL_", "CERTCTL_"])
def test_the_shared_store_serves_every_ca(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{prefix}STORE_URL", "sqlite:///var/lib/certpoll/orders.db")
    assert digicert().store_url == "sqlite:///var/lib/certpoll/orders.db"
    sectigo = SectigoSettings(customer_uri="acme", login="l", password="p", org_id=1, cert_type=1)
    assert sectigo.store_url == "sqlite:///var/lib/certpoll/orders.db"


@pytest.mark.parametrize("prefix", ["CERTPOLL_", "CERTCTL_"])
def test_a_cas_own_store_wins_over_the_shared_one(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTPOLL_STORE_URL", "sqlite:///shared.db")
    monkeypatch.setenv(f"{prefix}DIGICERT_STORE_URL", "postgresql://certpoll@db/orders")
    assert digicert().store_url == "postgresql://certpoll@db/orders"
    given = DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, store_url="memory://")
    assert given.store_url == "memory://"


def test_certpoll_wins_over_certctl_for_the_shared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTCTL_STORE_URL", "sqlite:///old.db")
    monkeypatch.setenv("CERTPOLL_STORE_URL", "sqlite:///new.db")
    assert digicert().store_url == "sqlite:///new.db"


@pytest.mark.parametrize("url", ["redis://cache/0", "mysql://u:hunter2@db/x", "orders.db"])
def test_a_bad_store_url_names_the_variable_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match="CERTPOLL_DIGICERT_STORE_URL") as caught:
        DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, store_url=url)
    assert "hunter2" not in str(caught.value)


def test_orders_reads_the_shared_store_when_no_store_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTPOLL_STORE_URL", f"sqlite:///{tmp_path / 'o.db'}")
    assert main(["orders", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["pending"] == 0
    assert (tmp_path / "o.db").exists()


def test_without_any_store_the_command_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["orders"]) != 0
    assert "CERTPOLL_STORE_URL" in capsys.readouterr().err


def test_a_worker_for_cas_on_different_stores_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", DIGICERT_API_KEY)
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "1")
    monkeypatch.setenv("CERTPOLL_DIGICERT_STORE_URL", "sqlite:///a.db")
    monkeypatch.setenv("CERTPOLL_SECTIGO_CUSTOMER_URI", "acme")
    monkeypatch.setenv("CERTPOLL_SECTIGO_LOGIN", "l")
    monkeypatch.setenv("CERTPOLL_SECTIGO_PASSWORD", "p")
    monkeypatch.setenv("CERTPOLL_SECTIGO_ORG_ID", "1")
    monkeypatch.setenv("CERTPOLL_SECTIGO_CERT_TYPE", "1")
    monkeypatch.setenv("CERTPOLL_SECTIGO_STORE_URL", "sqlite:///b.db")
    assert main(["worker", "--ca", "digicert", "--ca", "sectigo"]) != 0
    assert "different stores" in capsys.readouterr().err


def test_no_backend_password_shows_in_the_settings_repr() -> None:
    settings = DigiCertSettings(
        api_key=DIGICERT_API_KEY,
        org_id=1,
        gate_url="redis://:hunter2@cache:6379/0",
        store_url="postgresql://certpoll:hunter3@db/orders",
    )
    shown = f"{settings!r} {settings}"
    assert "hunter2" not in shown
    assert "hunter3" not in shown
    assert "db/orders" in shown  # still says where the store is


@pytest.mark.parametrize("prefix", ["CERTPOLL_", "CERTCTL_"])
def test_the_store_url_is_read_from_dotenv_like_every_setting(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"{prefix}STORE_URL=sqlite:///from-dotenv.db\n")
    assert digicert().store_url == "sqlite:///from-dotenv.db"
    # A CA's own store, in .env too, wins over the shared one.
    with (tmp_path / ".env").open("a") as env:
        env.write(f"{prefix}DIGICERT_STORE_URL=sqlite:///digicert-only.db\n")
    assert digicert().store_url == "sqlite:///digicert-only.db"
    # The environment wins over .env.
    monkeypatch.setenv("CERTPOLL_DIGICERT_STORE_URL", "memory://")
    assert digicert().store_url == "memory://"


def test_orders_reads_the_shared_store_from_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"CERTPOLL_STORE_URL=sqlite:///{tmp_path / 'env.db'}\n")
    assert main(["orders", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["issued"] == 0
    assert (tmp_path / "env.db").exists()
