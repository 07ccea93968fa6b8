"""Backend URLs: every scheme, the bad ones, and never a password in what is shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certpoll import ConfigError
from certpoll._backends.urls import Scheme, parse_backend_url

ALL: tuple[Scheme, ...] = ("memory", "sqlite", "redis", "postgresql")


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("memory://", "memory"),
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://cache.example:6380/1", "redis"),
        ("postgresql://certpoll@db.example/certpoll", "postgresql"),
        ("postgres://db.example:5433/certpoll", "postgresql"),
        ("PostgreSQL://db.example/certpoll", "postgresql"),
    ],
)
def test_schemes(url: str, scheme: Scheme) -> None:
    parsed = parse_backend_url(url, setting="CERTPOLL_GATE_URL", allowed=ALL)
    assert parsed.scheme == scheme
    assert parsed.url == url
    assert parsed.redacted == url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///gate.db", Path("gate.db")),
        ("sqlite:///var/gate.db", Path("var/gate.db")),
        ("sqlite:////var/lib/certpoll/gate.db", Path("/var/lib/certpoll/gate.db")),
    ],
)
def test_sqlite_paths_as_sqlalchemy_reads_them(url: str, path: Path) -> None:
    assert parse_backend_url(url, setting="S", allowed=ALL).path == path


@pytest.mark.parametrize(
    "url",
    ["", "gate.db", "/tmp/gate.db", "http://x", "mysql://h/db", "sqlite://", "sqlite:///",
     "sqlite://host/x.db", "redis://", "postgresql:///db", "redis://h:99999999/0"],
)  # fmt: skip
def test_bad_urls_are_config_errors_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="CERTPOLL_DIGICERT_GATE_URL"):
        parse_backend_url(url, setting="CERTPOLL_DIGICERT_GATE_URL", allowed=ALL)


def test_a_scheme_not_allowed_here_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"memory://, sqlite://, postgresql://"):
        parse_backend_url("redis://h/0", setting="S", allowed=("memory", "sqlite", "postgresql"))


_password = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="@/#?[]"), min_size=4
).filter(lambda p: p.strip() == p and "***" not in p)


@given(password=_password, scheme=st.sampled_from(["redis", "postgresql", "rediss"]))
def test_the_password_is_never_shown(password: str, scheme: str) -> None:
    from urllib.parse import quote

    url = f"{scheme}://user:{quote(password, safe='')}@db.example:1234/0"
    parsed = parse_backend_url(url, setting="S", allowed=ALL)
    shown = " ".join([parsed.redacted, str(parsed), repr(parsed)])
    assert quote(password, safe="") not in shown.replace("user", "")
    assert "user:***@db.example:1234" in parsed.redacted
    with pytest.raises(ConfigError) as caught:
        parse_backend_url(url.replace("db.example:1234", "db.example:99999999"), setting="S",
                          allowed=ALL)  # fmt: skip
    assert quote(password, safe="") not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u@db/orders?sslmode=require&password=hunter2",
            "postgresql://u@db/orders?sslmode=require&password=***",
        ),
        (
            "postgresql://u:hunter2@db/orders?PASSWORD=hunter2&sslpassword=hunter2",
            "postgresql://u:***@db/orders?PASSWORD=***&sslpassword=***",
        ),
        ("redis://db:6379/0?password=hunter2", "redis://db:6379/0?password=***"),
        ("redis://db:6379/0?socket_timeout=5", "redis://db:6379/0?socket_timeout=5"),
    ],
)
def test_a_password_in_the_query_is_never_shown(url: str, shown: str) -> None:
    # libpq and redis-py both read a password from the query as well.
    parsed = parse_backend_url(url, setting="S", allowed=ALL)
    assert parsed.redacted == shown
    assert "hunter2" not in f"{parsed} {parsed!r}"
    assert parsed.url == url
