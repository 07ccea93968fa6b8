"""The exception tree is the one the errors module documents."""

from __future__ import annotations

import re

import certpoll
from certpoll import _errors


def documented_tree() -> dict[str, str]:
    """child -> parent, read from the ASCII tree in ``certpoll._errors.__doc__``."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (_errors.__doc__ or "").splitlines():
        found = re.match(r"^(\s*(?:[│ ]*[├└]── )?)(\w+)", line)
        suffixes = ("Error", "Limited", "Found", "Timeout", "Uncertain", "Closed")
        if not found or not found.group(2).endswith(suffixes):
            continue
        depth = len(found.group(1))
        name = found.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_the_docstring_tree_matches_the_classes() -> None:
    tree = documented_tree()
    assert set(tree) == set(_errors.__all__) - {"CertpollError"}
    for child, parent in tree.items():
        assert issubclass(getattr(certpoll, child), getattr(certpoll, parent)), child


def test_stdlib_bases_where_the_meaning_matches() -> None:
    assert issubclass(certpoll.ConfigError, ValueError)
    assert issubclass(certpoll.AttemptTimeout, TimeoutError)


def test_errors_carry_their_context() -> None:
    error = certpoll.RateLimited(
        "digicert GET /order/certificate/1: HTTP 429",
        ca="digicert",
        order_id="1",
        status_code=429,
        body_excerpt="slow down",
        retry_after=30,
    )
    assert (error.ca, error.order_id, error.status_code, error.retry_after) == (
        "digicert",
        "1",
        429,
        30,
    )
    assert str(error) == "digicert GET /order/certificate/1: HTTP 429"
    assert repr(error).startswith("RateLimited('digicert GET")
    assert "status_code=429" in repr(error)


def test_submission_uncertain_says_what_is_known() -> None:
    error = certpoll.SubmissionUncertain(
        "may have reached the CA", ca="sectigo", common_name="www.example.com", status_code=502
    )
    assert error.common_name == "www.example.com"
    assert error.status_code == 502
    assert error.order_id is None
