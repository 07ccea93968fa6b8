"""Redaction: the one place that removes credentials from text certpoll keeps or shows.

A credential can reach a message in more spellings than the one in the settings: an HTTP
library prints header values as ``bytes`` reprs, ``repr`` escapes, URLs percent-encode,
JSON escapes, and a basic ``Authorization`` header is the base64 of ``user:password``.
:class:`Redactor` replaces every one of those spellings, longest first (so a login that is
a prefix of the password cannot leave the rest of the password visible), in one pass (so a
replacement is never matched again), and every character covered by any spelling goes (so
two echoes that overlap cannot leave the tail of one visible). Text is always redacted
*before* it is cut to an excerpt, so an echo across the cut cannot leave a secret's first
characters behind.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterable
from typing import Final, final
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "Redactor", "spellings"]

#: What a credential is replaced with.
REDACTED: Final = "[redacted]"


def _percent_spellings(text: str) -> set[str]:
    spellings = set()
    for encoded in (quote(text, safe=""), quote(text), quote_plus(text)):
        spellings.add(encoded)
        # Percent-encoding is case-insensitive in its hex digits.
        spellings.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    return spellings


def _base64_spellings(raw: bytes) -> set[str]:
    spellings = set()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        spellings |= {text, text.rstrip("=")}
    return spellings


def spellings(secret: str) -> set[str]:
    """Every way ``secret`` can be written into a message by Python, httpx or a URL."""
    raw = secret.encode("utf-8", "surrogatepass")
    found = {
        secret,
        repr(secret)[1:-1],
        repr(raw)[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        # PHP (and others) escape "/" in JSON strings.
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        *_percent_spellings(secret),
        *_base64_spellings(raw),
    }
    found.discard("")
    return found


@final
class Redactor:
    """Replaces every spelling of the given credentials with ``[redacted]``.

    >>> Redactor(["s3cret"])("key=s3cret, basic=czNjcmV0")
    'key=[redacted], basic=[redacted]'
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s})
        found: set[str] = set()
        for value in values:
            found |= spellings(value)
        # A basic Authorization header: base64 of "user:password", for any pair.
        for first, second in itertools.permutations(values, 2):
            found |= _base64_spellings(f"{first}:{second}".encode("utf-8", "surrogatepass"))
        ordered = sorted(found, key=lambda text: (-len(text), text))
        # A lookahead finds the longest spelling starting at *every* position, overlapping
        # ones included: "login-AB12" and "AB12-password" echoed as "login-AB12-password"
        # must not leave "-password" behind once "login-AB12" is replaced.
        alternatives = "|".join(map(re.escape, ordered))
        self._pattern = re.compile(f"(?=({alternatives}))") if ordered else None

    def __call__(self, text: str) -> str:
        """``text`` without any credential: every character inside any spelling of one."""
        if self._pattern is None:
            return text
        spans: list[list[int]] = []
        for found in self._pattern.finditer(text):
            start, end = found.start(), found.start() + len(found.group(1))
            if spans and start < spans[-1][1]:  # overlaps the one before: one span
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        parts, done = [], 0
        for start, end in spans:
            parts += [text[done:start], REDACTED]
            done = end
        parts.append(text[done:])
        return "".join(parts)

    def __repr__(self) -> str:
        return "Redactor([redacted])"
