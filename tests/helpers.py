"""Test doubles shared by the suite."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TypeVar

import looptime

from certpoll.testing import VirtualClock

T = TypeVar("T")

#: The suite's virtual clock is the one certpoll.testing ships.
FakeTime = VirtualClock


#: The credentials every test uses. The autouse ``_no_secret_in_logs`` fixture fails any test
#: whose log records contain one of them, so use these, not ad-hoc strings.
DIGICERT_API_KEY = "dc-SECRET-api-key-7f3a9c"
SECTIGO_LOGIN = "sectigo-SECRET-login-51d0"
SECTIGO_PASSWORD = "sectigo-SECRET-password-e8b2"
GLOBALSIGN_API_KEY = "gs-SECRET-api-key-0c44"
GLOBALSIGN_API_SECRET = "gs-SECRET-api-secret-9a1f"
GLOBALSIGN_TOKEN = "gs-SECRET-bearer-token-77e2"
TEST_SECRETS = (
    DIGICERT_API_KEY,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    GLOBALSIGN_TOKEN,
)


def leaked_secrets(text: str) -> list[str]:
    """The test credentials that appear in ``text``."""
    return [secret for secret in TEST_SECRETS if secret in text]


def assert_no_secrets(*things: object) -> None:
    """Fail if ``str`` or ``repr`` of any thing holds a test credential.

    For an exception, its attributes (``body_excerpt``, ...) and its whole ``__cause__`` /
    ``__context__`` chain are checked too.
    """
    for thing in things:
        seen: set[int] = set()
        current: object = thing
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            texts = [str(current), repr(current)]
            if isinstance(current, BaseException):
                texts.append(repr(getattr(current, "__dict__", None)))
            leaked = leaked_secrets(" ".join(texts))
            assert not leaked, f"{type(current).__name__} leaks {leaked}: {current!r}"
            if isinstance(current, BaseException):
                current = current.__cause__ or current.__context__
            else:
                current = None


def run_in_virtual_time(coroutine: Coroutine[object, object, T]) -> T:
    """Run ``coroutine`` on a fresh virtual-time loop (``looptime``: the clock starts at 0 and
    moves only when every task waits), closed at once: for ``@given`` examples, each on its
    own loop.
    """
    loop = looptime.new_event_loop(start=0.0, _enabled=True)
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()
