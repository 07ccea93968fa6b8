"""The ``certpoll`` command: demo, status (against the simulator served on 127.0.0.1), serve-sim.

``main`` runs in a worker thread, as from a shell: it owns its event loop there, while the
test's loop serves the simulated CA. Time: the simulator runs 1000 times faster and the
poll schedule starts at 10 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

import certpoll
from certpoll.__main__ import main
from certpoll.testing import OrderScript, ServedCA, SimulatedCA, serve
from tests.certs import make_csr
from tests.credentials import CREDENTIALS
from tests.helpers import DIGICERT_API_KEY, leaked_secrets


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)


def point_at(monkeypatch: pytest.MonkeyPatch, url: str, *, max_backoff: str | None) -> None:
    """The environment of a DigiCert account at ``url``, polled every few milliseconds."""
    clean_env(monkeypatch)
    for name, value in CREDENTIALS.environment("digicert", url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_INITIAL_WAIT_SECONDS", "0.01")
    if max_backoff is not None:
        monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_MAX_BACKOFF_SECONDS", max_backoff)


def check_output(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out, err = capsys.readouterr()
    assert not leaked_secrets(out + err)
    assert "Traceback" not in err
    return out, err


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[SimulatedCA, ServedCA]]:
    clean_env(monkeypatch)
    sim = SimulatedCA(credentials=CREDENTIALS, speed=1000)
    async with serve(sim, tls=False) as served:
        point_at(monkeypatch, served.base_urls.digicert, max_backoff="0.05")
        yield sim, served


async def submit(served: ServedCA, sim: SimulatedCA, script: OrderScript) -> str:
    sim.script_next(script)
    settings = CREDENTIALS.settings("digicert", served.base_urls.digicert)
    async with certpoll.connector_for(settings) as dc:
        order = await dc.issue(
            certpoll.CertificateRequest(common_name="a.example", csr_pem=make_csr("a.example"))
        )
    return order.order_id


async def test_status_issued_json_and_out(
    served: tuple[SimulatedCA, ServedCA], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, where = served
    first = await submit(where, sim, OrderScript(issue_after=20))
    second = await submit(where, sim, OrderScript())
    code = await run("status", "digicert", first, second, "--json", "--out", str(tmp_path / "o"))
    out, _ = check_output(capsys)
    assert code == 0
    report = json.loads(out)
    assert [r["order_id"] for r in report] == [first, second]
    assert {r["state"] for r in report} == {"issued"}
    assert report[0]["serial"] == str(sim.order("digicert", first).serial)
    leaf = Path(report[0]["files"][0])
    assert leaf.read_text().startswith("-----BEGIN CERTIFICATE-----")  # noqa: ASYNC240
    assert leaf.parent == tmp_path / "o"


async def test_status_exit_codes(
    served: tuple[SimulatedCA, ServedCA], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, where = served
    rejected = await submit(where, sim, OrderScript(issue_after=5, reject=True))
    waiting = await submit(where, sim, OrderScript(approval_for=10**7))
    issued = await submit(where, sim, OrderScript())
    assert await run("status", "digicert", rejected, "--plain") == 2
    out, _ = check_output(capsys)
    assert f"digicert {rejected}  failed" in out
    assert await run("status", "digicert", waiting, issued, "--max-wait", "0.1", "--plain") == 3
    out, _ = check_output(capsys)
    assert f"digicert {waiting}  still pending" in out
    assert f"digicert {issued}  issued" in out
    assert await run("status", "digicert", waiting, rejected, "--max-wait", "0.1") == 2


async def test_refused_credential_is_one_line(
    served: tuple[SimulatedCA, ServedCA],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", DIGICERT_API_KEY + "-wrong")
    assert await run("status", "digicert", "100001") == 1
    _, err = check_output(capsys)
    assert err.count("\n") == 2
    assert err.startswith("certpoll: error: ")
    assert "hint: check the credential" in err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["status", "verisign", "1"], "digicert, sectigo, entrust, globalsign"),
        (["status", "digicert", "1"], "CERTPOLL_DIGICERT_"),
        ([], "certpoll demo"),
        (["status"], "--help"),
        (["frobnicate"], "--help"),
        (["demo", "--orders", "zero"], "--help"),
        (["serve-sim", "--port", "99999"], "--help"),
    ],
)
async def test_user_mistakes(
    argv: list[str],
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env(monkeypatch)
    assert await run(*argv) == 1
    _, err = check_output(capsys)
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("certpoll: error: ")
    assert lines[1].startswith("hint: ")
    assert hint in lines[1]


async def test_bad_order_id_and_duplicates(
    served: tuple[SimulatedCA, ServedCA], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("status", "digicert", "12abc") == 1
    _, err = check_output(capsys)
    assert "'12abc' is not a valid DigiCert order id" in err
    assert await run("status", "digicert", "5", "5") == 1
    _, err = check_output(capsys)
    assert "twice" in err


async def test_demo_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("demo", "--orders", "8", "--speed", "20000", "--plain", "--seed", "3") == 0
    out, _ = check_output(capsys)
    assert "8 renewals" in out
    assert out.splitlines()[-1].startswith("wall time")
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1] == "8"


async def test_serve_sim_serves_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certpoll",
        "serve-sim",
        "--port",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    origin = first.split(" on ")[1].split()[0]
    assert origin.startswith("http://127.0.0.1:")
    lines = [(await process.stdout.readline()).decode() for _ in range(6)]
    prefix = "export CERTPOLL_DIGICERT_BASE_URL="
    base_url = next(line for line in lines if line.startswith(prefix)).strip()[len(prefix) :]
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base_url}/order/certificate/1")
    assert answer.status_code in (401, 403, 404)  # the simulator answered
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err
    assert b"Traceback" not in err


async def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("--version") == 0
    out, _ = check_output(capsys)
    assert out.strip() == f"certpoll {version('certpoll')}"
    assert await run("status", "--help") == 0
    out, _ = check_output(capsys)
    assert "--out DIR" in out
    assert "DIR/<ca>-<order-id>.pem" in " ".join(out.split())
    assert await run("serve-sim", "--help") == 0
    out, _ = check_output(capsys)
    assert "--seed SEED" in out
    assert "simulated seconds per real second" in " ".join(out.split())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("json_out", [False, True])
async def test_an_unreachable_ca_shows_each_attempt_and_the_last_error(
    json_out: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    point_at(monkeypatch, f"http://127.0.0.1:{port}", max_backoff="0.02")
    # Real time: a second is room for two attempts even on a loaded machine.
    argv = ["status", "digicert", "7", "--max-wait", "1", "--attempts", "always"]
    assert await run(*argv, *(["--json"] if json_out else ["--plain"])) == 3
    out, err = check_output(capsys)
    refused = f"connection refused (127.0.0.1:{port})"
    attempts = err.splitlines()
    assert len(attempts) >= 2
    assert attempts[0] == f"digicert 7: attempt 1 pending: {refused}; next in 0 s"
    assert all(line.startswith("digicert 7: attempt ") for line in attempts)
    if json_out:
        assert json.loads(out)[0]["last_error"] == refused
    else:
        assert out.strip() == f"digicert 7  pending; last error: {refused}"


async def test_attempts_are_not_shown_off_a_terminal_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(monkeypatch, f"http://127.0.0.1:{closed_port()}", max_backoff=None)
    assert await run("status", "digicert", "7", "--max-wait", "0.05") == 3
    _, err = check_output(capsys)
    assert err == ""  # no attempt lines, and no log line either


async def test_ctrl_c_exits_130_and_json_reports_every_order(
    served: tuple[SimulatedCA, ServedCA],
) -> None:
    sim, where = served
    waiting = await submit(where, sim, OrderScript(approval_for=10**7))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTPOLL_DIGICERT_POLL")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "certpoll", "status", "digicert", waiting, "--json", "--attempts", "always"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stderr is not None
    # Interrupted once the order has been looked at: it waits 5 s for its next look.
    line = await asyncio.wait_for(process.stderr.readline(), 30)
    assert line.decode().startswith(f"digicert {waiting}: attempt 1 pending")
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, err
    assert err.decode().splitlines() == ["certpoll: interrupted"]
    [report] = json.loads(out)
    assert (report["order_id"], report["state"]) == (waiting, "pending")
    assert report["message"] == "interrupted before the order settled"
