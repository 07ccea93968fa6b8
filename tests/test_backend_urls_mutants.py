"""Backend URLs, exactly: what tests/test_backend_urls.py checks by shape, checked to the
letter (written against the survivors of ``make mutate``, docs/testing-internals.md).

Every message names the setting and shows the URL without its password; every form of
user, password, host and port is shown as written, less the password.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from certpoll import ConfigError
from certpoll._backends.urls import BackendURL, Scheme, parse_backend_url

ALL: tuple[Scheme, ...] = ("memory", "sqlite", "redis", "postgresql")


def parse(url: str, allowed: tuple[Scheme, ...] = ALL) -> BackendURL:
    return parse_backend_url(url, setting="CERTPOLL_X_GATE_URL", allowed=allowed)


def refusal(url: str, allowed: tuple[Scheme, ...] = ALL) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(url, allowed)
    assert caught.value.__cause__ is None
    return str(caught.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:hunter22@cache.example/0", "redis://:***@cache.example/0"),
        ("redis://user:hunter22@cache.example/0", "redis://user:***@cache.example/0"),
        ("redis://user:hunter22@cache.example:6380/0", "redis://user:***@cache.example:6380/0"),
        ("redis://user:hunter22@[::1]:6380/0", "redis://user:***@[::1]:6380/0"),
        ("redis://user:hunter22@[::1]/0", "redis://user:***@[::1]/0"),
        ("postgresql://u:hunter22@db.example/x?sslmode=require",
         "postgresql://u:***@db.example/x?sslmode=require"),
        ("redis://user@cache.example/0", "redis://user@cache.example/0"),
        ("redis://user:@cache.example/0", "redis://user:***@cache.example/0"),
    ],
)  # fmt: skip
def test_the_url_is_shown_as_written_less_its_password(url: str, redacted: str) -> None:
    parsed = parse(url)
    assert (parsed.url, parsed.redacted, str(parsed)) == (url, redacted, redacted)
    assert "hunter22" not in repr(parsed)
    assert parsed.path is None


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("rediss://cache.example/0", "redis"), ("REDIS://cache.example/0", "redis"),
     ("Postgres://db.example/x", "postgresql"), ("MEMORY://", "memory"),
     ("SQLite:///gate.db", "sqlite")],
)  # fmt: skip
def test_scheme_names_ignore_case_and_have_aliases(url: str, scheme: Scheme) -> None:
    assert parse(url).scheme == scheme


def test_memory_points_at_nothing() -> None:
    parsed = parse("memory://")
    assert parsed == BackendURL("memory", "memory://", "memory://")
    assert parsed.path is None


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///gate.db", "gate.db"), ("sqlite:////srv/gate.db", "/srv/gate.db"),
     ("sqlite:///./g/gate.db", "./g/gate.db")],
)  # fmt: skip
def test_a_sqlite_url_is_its_file(url: str, path: str) -> None:
    parsed = parse(url)
    assert parsed == BackendURL("sqlite", url, url, Path(path))


def test_a_scheme_not_allowed_is_refused_with_the_choices() -> None:
    assert refusal("redis://h/0", ("memory", "sqlite")) == (
        "CERTPOLL_X_GATE_URL must be a URL starting with one of memory://, sqlite://, not redis://…"
    )
    assert refusal("mysql://u:hunter22@h/db") == (
        "CERTPOLL_X_GATE_URL must be a URL starting with one of memory://, sqlite://, "
        "redis://, postgresql://, not mysql://…"
    )


@pytest.mark.parametrize("url", ["gate.db", "redis:/h", "", "memory:", "memory", "SQLite"])
def test_a_value_with_no_scheme_is_refused_as_such(url: str) -> None:
    assert refusal(url).endswith(", not a value with no scheme")


def test_a_bad_port_is_refused_without_the_password() -> None:
    message = refusal("redis://u:hunter22@h:99999999/0")
    assert message.startswith("CERTPOLL_X_GATE_URL is not a valid redis URL: ")
    assert "hunter22" not in message


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/gate.db"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    assert refusal(url) == (
        "CERTPOLL_X_GATE_URL must name a file: sqlite:///relative/path.db or "
        f"sqlite:////absolute/path.db, not {url}"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [("redis://", "redis://"), ("postgresql://:hunter22@/db", "postgresql://:***@/db")],
)
def test_a_server_url_without_a_host_is_refused(url: str, shown: str) -> None:
    assert refusal(url) == f"CERTPOLL_X_GATE_URL must name a host: {shown}"


def test_the_scheme_is_what_comes_before_the_first_separator() -> None:
    url = "redis://cache.example/0?client_name=http://a"
    parsed = parse(url)
    assert (parsed.scheme, parsed.redacted) == ("redis", url)
