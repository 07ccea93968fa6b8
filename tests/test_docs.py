"""Every Python block of README.md and docs/ runs, and every certpoll command of the docs too.

The rules the pages rely on are written in docs/index.md ("How the examples in these pages
run"): blocks run in order, page by page, in one namespace per page, as in
``python -m asyncio`` (top-level ``await``); the environment is the one ``certpoll
serve-sim`` prints, pointing at a simulated CA served on 127.0.0.1; ``csr`` is a PEM CSR;
``install``, ``alert``, ``store``, ``show`` and ``schedule_retry`` stand for the reader's own
code, and record what they are handed. Each page
runs in a worker thread with its own event loop, as a reader's script would.

A ``console`` block is a session: ``$ export NAME=value`` sets a variable, ``$ certpoll ...``
runs the command (on a virtual clock, so ``--max-wait 20`` takes no real time) and its
output must be the lines that follow. In ``sh`` blocks, which show commands without their
output, each ``certpoll`` command must be one the command line accepts.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import CodeType

import httpx
import pytest
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser

import certpoll
from certpoll import _cli, _demo
from certpoll.testing import MOUNTS, SimulatedCA, serve
from tests.certs import make_csr

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _compile(example: Example) -> CodeType:
    # Blank lines first, so that a traceback points at the line of the page.
    source: str = "\n" * (example.line + example.parsed.line_offset) + str(example.parsed)
    code: CodeType = compile(
        source, str(example.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    return code


def _run_python(example: Example) -> None:
    namespace = example.namespace
    loop: asyncio.AbstractEventLoop = namespace["__loop__"]
    result = eval(_compile(example), namespace)  # noqa: S307 - the docs' own code
    if asyncio.iscoroutine(result):  # the block awaits at the top level
        loop.run_until_complete(result)


def _commands(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        command = line.removeprefix("$ ")
        if command.startswith("certpoll "):
            yield shlex.split(command, comments=True)[1:]


def _check_sh(example: Example) -> None:
    for argv in _commands(example.parsed):
        # The parser raises on an option or a command that does not exist (any more);
        # --version and --help exit 0 once printed.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            _cli._parser().parse_args([a for a in argv if a != "..."])


class _VirtualClock(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _demo.compressed_loop(100_000)


def _run_console(example: Example) -> None:
    """Run each ``$ certpoll`` line and compare its output with the lines below it."""
    session: list[tuple[str, list[str]]] = []
    for line in example.parsed.splitlines():
        if line.startswith("$ "):
            session.append((line[2:], []))
        elif session:
            session[-1][1].append(line)
    for command, expected in session:
        words = shlex.split(command)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            os.environ[name] = value
            continue
        assert words[0] == "certpoll", f"{example.path}:{example.line}: runs {words[0]}"
        out = io.StringIO()
        policy = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(_VirtualClock())
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                _cli.main(words[1:])
        finally:
            asyncio.set_event_loop_policy(policy)
        assert out.getvalue().splitlines() == expected, f"{example.path}:{example.line}"


class _ReadersCode:
    """Stands for the reader's own code in a snippet (``install(certificate)``): records what
    the snippet hands over, in ``calls``, for a hidden block below it to check."""

    def __init__(self, name: str) -> None:
        self.__name__ = name
        self.calls: list[tuple[object, ...]] = []

    def __call__(self, *args: object) -> None:
        self.calls.append(args)

    def __repr__(self) -> str:
        return f"<the reader's {self.__name__}>"


#: The names that stand for the reader's own code, as docs/index.md lists them.
READERS_CODE = ("install", "alert", "store", "show", "schedule_retry")


SYBIL = Sybil(
    parsers=[
        CodeBlockParser(language="python", evaluator=_run_python),
        CodeBlockParser(language="console", evaluator=_run_console),
        CodeBlockParser(language="sh", evaluator=_check_sh),
    ]
)


@contextlib.asynccontextmanager
async def _serve_sim_environment(tmp_path: Path) -> AsyncIterator[None]:
    """The simulated CA on 127.0.0.1, and exactly the variables ``serve-sim`` prints."""
    sim = SimulatedCA()
    async with serve(sim, tls=False) as served:
        origin = served.base_urls.digicert.removesuffix(MOUNTS["digicert"])
        announced = io.StringIO()
        client = _cli._client_key_pair(tmp_path)
        _cli._announce(origin, sim.credentials, client, announced)
        exports = {}
        for line in announced.getvalue().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                exports[name] = value
        saved = dict(os.environ)
        os.environ.update(exports)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _run_page(page: Path) -> None:
    document = SYBIL.parse(page)
    loop = asyncio.new_event_loop()
    try:
        document.namespace.update(
            __loop__=loop,
            certpoll=certpoll,
            httpx=httpx,
            csr=make_csr("www.example.com"),
            **{name: _ReadersCode(name) for name in READERS_CODE},
        )
        for example in document:
            example.evaluate()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
async def test_every_block_of_the_page_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # files a snippet writes land here
    async with _serve_sim_environment(tmp_path):
        await asyncio.to_thread(_run_page, page)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_function_a_page_defines_is_used(page: Path) -> None:
    # A snippet that only defines a function (README's renew() did) runs without running its
    # body: an undefined name in it goes unseen. So each one is called, awaited or handed
    # over by some block of its page, hidden or not; pytest runs the test_ ones.
    source = "\n".join(
        str(example.parsed)
        for example in SYBIL.parse(page)
        if example.region.evaluator is _run_python
    )
    tree = compile(source, str(page), "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    assert isinstance(tree, ast.Module)
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("test_")
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in defined}
    assert defined <= used, f"{page}: defined, never used: {sorted(defined - used)}"


def test_the_api_reference_lists_every_public_name() -> None:
    import certpoll.testing

    listed = [
        line.removeprefix("::: ").strip()
        for line in (ROOT / "docs" / "api.md").read_text().splitlines()
        if line.startswith("::: ")
    ]
    public = [f"certpoll.{name}" for name in certpoll.__all__] + [
        f"certpoll.testing.{name}" for name in certpoll.testing.__all__
    ]
    assert sorted(listed) == sorted(public)


_FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_certpoll_command_of_the_page_is_in_a_checked_block(page: Path) -> None:
    # Only sh blocks (parsed) and console blocks (run) are checked: a command in a text or
    # unlabelled block could drift unseen.
    for language, body in _FENCE.findall(page.read_text()):
        runs_certpoll = any(
            line.removeprefix("$ ").startswith("certpoll ") for line in body.splitlines()
        )
        assert language in ("sh", "console") or not runs_certpoll, f"{page}: {body}"


def test_the_test_files_of_testing_md_pass_in_a_project_of_their_own(tmp_path: Path) -> None:
    # The page's blocks that start with "# <file name>" are a reader's project: written out
    # alone, with nothing from this suite's configuration or conftest, pytest passes them.
    written = []
    for _, body in _FENCE.findall((ROOT / "docs" / "testing.md").read_text()):
        name = re.fullmatch(r"# ([\w.]+)", body.partition("\n")[0])
        if name is not None:
            (tmp_path / name[1]).write_text(body)
            written.append(name[1])
    assert sorted(written) == ["conftest.py", "pyproject.toml", "test_renewal.py"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_the_exception_tree_of_errors_md_is_certpolls() -> None:
    [tree] = re.findall(
        r"## The exception tree\n\n```\n(.*?)```", (ROOT / "docs/errors.md").read_text(), re.DOTALL
    )
    parents: list[type[BaseException]] = []  # the branch above the current line, by depth
    drawn: set[str] = set()
    for line in tree.splitlines():
        branch = re.match(r"([│ ]*)(?:[├└]── )?(\w+)(?: \(also (\w+)\))?", line)
        assert branch is not None, line
        indent, name, also = branch.groups()
        depth = len(indent) // 4 + (1 if "── " in line else 0)
        cls = getattr(certpoll, name)
        assert depth <= len(parents), f"{line!r} has no parent line"
        del parents[depth:]
        if parents:
            assert parents[-1] in cls.__mro__[1:], f"{name} is not a {parents[-1].__name__}"
        if also is not None:
            assert any(base.__name__ == also for base in cls.__mro__), f"{name}: {also}"
        parents.append(cls)
        drawn.add(name)
    public = {
        name
        for name in certpoll.__all__
        if isinstance(getattr(certpoll, name), type)
        and issubclass(getattr(certpoll, name), certpoll.CertpollError)
    }
    assert drawn == public


def _figures(path: str, pattern: str) -> list[str]:
    found: list[str] = re.findall(pattern, (ROOT / path).read_text())
    assert found, f"{path} no longer says it ({pattern})"
    return found


def test_the_pages_give_one_figure_for_the_memory_of_a_pending_order() -> None:
    # docs/benchmarks.md is written by `make bench`; the README and many-orders.md quote it.
    quoted = {
        "docs/benchmarks.md (summary)": _figures(
            "docs/benchmarks.md", r"\| bytes per pending order \| (\d+) B \|"
        ),
        "docs/benchmarks.md (100,000 orders)": _figures(
            "docs/benchmarks.md", r"\n\| 100,000 \| (\d+) B \|"
        ),
        "README.md": _figures(
            "README.md", r"memory per pending order, 100,000 orders, [^|]*\| (\d+) B \|"
        ),
        "docs/many-orders.md": _figures(
            "docs/many-orders.md",
            r"\b(\d[\d,]*) (?:B|bytes)\b",  # its only figure in bytes
        ),
    }
    assert len({figure for figures in quoted.values() for figure in figures}) == 1, quoted


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ("```sh\ncertpoll status digicert 1 --no-such-option\n```\n", _cli.UserError),
        ("```console\n$ certpoll --version\ncertpoll 0.0.0-not-this\n```\n", AssertionError),
        ("```python\ncertpoll.NoSuchName\n```\n", AttributeError),
    ],
)
def test_a_block_that_drifts_fails(block: str, error: type[Exception], tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(block)
    with pytest.raises(error):
        _run_page(page)


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    # What `make docs` runs: --strict turns any warning (a broken link, a name the API
    # reference cannot find) into a failure.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "api" / "index.html").read_text()
    assert api.count('class="doc doc-heading"') > 60
    assert ":class:" not in api  # docs/_scripts/sphinx_roles.py turns roles into code
