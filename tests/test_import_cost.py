"""``import certpoll`` stays cheap: measured against ``import httpx``, in fresh interpreters.

No absolute time is asserted (machines differ): what certpoll adds on top of httpx is
compared with what httpx itself costs, the best of a few runs to shed a busy machine's noise.
The modules it must not load are checked exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What ``import certpoll`` may add, as a share of what ``import httpx`` costs. About 0.2
#: today (asyncio and certpoll's own small modules); the connectors, pydantic and
#: cryptography, imported eagerly, made it 1.5.
MAX_ADDED_SHARE = 0.6

HEAVY = ("pydantic", "pydantic_settings", "cryptography", "certpoll.testing", "uvicorn")

_MEASURE = """
import json, sys, time
started = time.perf_counter()
import httpx
between = time.perf_counter()
import certpoll
ended = time.perf_counter()
print(json.dumps({
    "httpx": between - started,
    "certpoll": ended - between,
    "heavy": sorted(name for name in sys.modules if name.startswith(HEAVY)),
}))
"""


def _python(code: str) -> str:
    """What ``code`` prints, run in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def _run(code: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(_python(code))
    return result


def test_import_certpoll_adds_little_to_httpx_and_nothing_heavy() -> None:
    code = f"HEAVY = {HEAVY!r}\n{_MEASURE}"
    runs = [_run(code) for _ in range(5)]
    assert all(run["heavy"] == [] for run in runs), runs[0]["heavy"]
    shares = [float(run["certpoll"]) / float(run["httpx"]) for run in runs]  # type: ignore[arg-type]
    assert min(shares) <= MAX_ADDED_SHARE, shares


def test_the_lazy_names_load_on_first_use() -> None:
    code = (
        "import sys, certpoll\n"
        "before = 'pydantic' in sys.modules\n"
        "connector = certpoll.DigiCert\n"
        "from certpoll import poll_many\n"
        "print(before, 'pydantic' in sys.modules, connector.__name__, poll_many.__name__)"
    )
    out = _python(code)
    assert out.split() == ["False", "True", "DigiCert", "poll_many"]


def test_the_cli_answers_version_without_the_connectors() -> None:
    code = (
        "import sys\n"
        "from certpoll.__main__ import main\n"
        "main(['--version'])\n"
        f"print(sorted(n for n in sys.modules if n.startswith({HEAVY!r})))"
    )
    out = _python(code)
    assert out.splitlines()[-1] == "[]"


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import certpoll

    with pytest.raises(AttributeError, match="no attribute 'DigiCertt'"):
        certpoll.DigiCertt  # noqa: B018
