"""The ``certpoll`` command: ``demo``, ``status`` and ``serve-sim`` (argparse, no click).

Exit codes of ``status``: 0 every order issued, 2 any order failed, 3 any order still
pending (and none failed), 1 an error (bad arguments, a missing setting, a refused
credential), 130 interrupted (Ctrl-C). A user mistake prints one line and a hint on stderr,
never a traceback. ``rich`` (the ``cli`` extra) draws the live display when installed; it is
imported here only. The connectors, their settings (pydantic) and the simulator are imported
by the command that needs them, so ``certpoll --help`` and ``--version`` start quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, NoReturn, TypeVar, get_args
from urllib.parse import quote

from ._display import has_rich, live_view, order_lines
from ._errors import AuthenticationError, CertpollError, ConfigError
from ._instrumentation import PollDetails
from ._models import CAName, OrderState, OrderStatus

if TYPE_CHECKING:
    from rich.table import Table

    from ._connectors._base import Connector
    from ._settings import CASettings
    from .testing import Credentials, SimulatedCA

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PENDING",
    "main",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_FAILED: Final = 2
EXIT_PENDING: Final = 3
#: 128 + SIGINT, as shells report a command stopped by Ctrl-C.
EXIT_INTERRUPTED: Final = 130
_CA_NAMES: Final[tuple[CAName, ...]] = get_args(CAName)
_N = TypeVar("_N", int, float)


class UserError(Exception):
    """A mistake of the user: printed as one line and a hint, exit code 1."""

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 on a usage error; 2 means "an order failed" here.
    def error(self, message: str) -> NoReturn:
        raise UserError(message, hint=f"see '{self.prog} --help'")


def _parser() -> _Parser:
    parser = _Parser(
        prog="certpoll",
        description="Poll commercial CAs (DigiCert, Sectigo, Entrust, GlobalSign) for "
        "certificates that are issued asynchronously.",
    )
    parser.add_argument("--version", action="version", version=f"certpoll {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    demo = commands.add_parser(
        "demo", help="renew thousands of certificates against the simulated CA"
    )
    demo.add_argument("--orders", type=_positive_int, default=None, help="default 2000")
    demo.add_argument("--seed", type=int, default=None, help="the simulator's random seed")
    demo.add_argument(
        "--speed", type=float, default=None, help="simulated seconds per real second (600)"
    )
    demo.add_argument("--plain", action="store_true", help="plain lines, no live table")

    status = commands.add_parser(
        "status",
        help="poll orders until issued, failed or still pending",
        description="Settings come from the environment: CERTPOLL_<CA>_* (or CERTCTL_<CA>_*).",
    )
    status.add_argument("ca", help="digicert, sectigo, entrust or globalsign")
    status.add_argument("order_ids", nargs="+", metavar="order-id")
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write each certificate to DIR/<ca>-<order-id>.pem and its chain to "
        "DIR/<ca>-<order-id>.chain.pem (DIR is created if missing)",
    )
    status.add_argument(
        "--max-wait",
        type=_positive_float,
        default=None,
        help="seconds to poll (default: the CA's PollMaxWait setting)",
    )
    status.add_argument("--plain", action="store_true", help="plain lines, no live table")
    status.add_argument(
        "--attempts",
        choices=("auto", "always", "never"),
        default="auto",
        help="print each poll attempt on stderr as it happens (auto: when stderr is a terminal)",
    )

    serve = commands.add_parser(
        "serve-sim", help="serve the simulated CA on 127.0.0.1 (needs certpoll[sim])"
    )
    serve.add_argument("--port", type=_port, default=0, help="default: a free port")
    serve.add_argument(
        "--profile", choices=("instant", "realistic"), default="instant", help="order scripts"
    )
    serve.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the realistic profile: the same seed scripts the same orders "
        "(default 0)",
    )
    serve.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="simulated seconds per real second: 60 makes a minute of validation take a "
        "second (default 1)",
    )
    _add_store_commands(commands)
    return parser


def _version() -> str:
    try:
        return version("certpoll")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "unknown"


def _argument(text: str, parse: Callable[[str], _N], fits: Callable[[_N], bool], what: str) -> _N:
    """``text`` parsed by ``parse`` when it ``fits``; else argparse's one-line refusal."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not fits(value):
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _argument(text, int, lambda value: value >= 1, "a positive integer")


def _positive_float(text: str) -> float:
    # NaN is not above 0, so it is refused with the rest.
    return _argument(text, float, lambda value: value > 0, "a positive number")


def _port(text: str) -> int:
    return _argument(text, int, lambda value: 0 <= value <= 65535, "a port number")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit 0
            return exc.code if isinstance(exc.code, int) else EXIT_ERROR
        if args.command is None:
            raise UserError("no command given", hint="try 'certpoll demo' or 'certpoll --help'")
        if args.command == "demo":
            return _demo(args)
        if args.command == "status":
            return _status(args)
        if args.command in ("worker", "orders"):
            return _store_command(args)
        return _serve_sim(args)
    except UserError as exc:
        _complain(str(exc), exc.hint)
    except ConfigError as exc:
        _complain(str(exc), "see 'certpoll --help' and docs/cli.md")
    except KeyboardInterrupt:
        print("certpoll: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def _complain(message: str, hint: str) -> None:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"certpoll: error: {line}", file=sys.stderr)
    print(f"hint: {hint}", file=sys.stderr)


# -- demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from . import _demo as demo

    orders = demo.demo_orders_from_env() if args.orders is None else args.orders
    demo.run_demo(
        orders=orders,
        seed=demo.DEFAULT_SEED if args.seed is None else args.seed,
        speed=demo.DEFAULT_SPEED if args.speed is None else args.speed,
        live=False if args.plain else None,
    )
    return EXIT_OK


# -- status -----------------------------------------------------------------------------


def _connector_for(
    ca_name: str, hooks: Sequence[Callable[[PollDetails], None]]
) -> Connector[CASettings]:
    from ._connectors.registry import connector_for, settings_type_for

    ca = ca_name.lower()
    if ca not in _CA_NAMES:
        raise UserError(f"unknown CA {ca_name!r}", hint=f"the CA is one of: {', '.join(_CA_NAMES)}")
    settings_cls = settings_type_for(ca)
    variables = settings_cls.env_var("*")
    try:
        settings = settings_cls()
    except ConfigError as exc:
        raise UserError(
            str(exc), hint=f"set the {variables} environment variables (see docs/cli.md)"
        ) from exc
    try:
        # The attempts are shown (or not) by the command, never logged to stderr twice.
        return connector_for(settings, poller=settings.make_poller(hooks=hooks))
    except ConfigError as exc:
        raise UserError(str(exc), hint=f"check the {variables} file settings") from exc


def _status(args: argparse.Namespace) -> int:
    order_ids: list[str] = list(args.order_ids)
    show_attempts = args.attempts == "always" or (args.attempts == "auto" and sys.stderr.isatty())
    display = _Display(
        order_ids,
        json_out=args.json,
        live=not (args.json or args.plain) and sys.stdout.isatty() and has_rich(),
        show_attempts=show_attempts,
    )
    connector = _connector_for(args.ca, [display.attempt])
    for order_id in order_ids:
        try:
            connector.check_order_id(order_id)
        except ConfigError as exc:
            raise UserError(
                str(exc), hint=f"give the order ids as {connector.ca} shows them"
            ) from exc
    if len(set(order_ids)) != len(order_ids):
        raise UserError("an order id is given twice", hint="give each order id once")
    out: Path | None = args.out
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create {str(out)!r}: {exc.strerror}", hint="choose another --out DIR"
            ) from exc
    interrupted = False
    try:
        asyncio.run(_poll(connector, order_ids, args.max_wait, display))
    except KeyboardInterrupt:
        interrupted = True
    except AuthenticationError as exc:
        raise UserError(
            str(exc),
            hint=f"check the credential in {connector.settings.env_var('*')} settings",
        ) from exc
    except CertpollError as exc:
        raise UserError(str(exc), hint="check the settings and the CA's address") from exc
    statuses = display.statuses(connector.ca)
    files = {} if out is None else _write(out, statuses)
    display.finish(statuses, files)
    if interrupted:
        print("certpoll: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    states = {status.state for status in statuses}
    if OrderState.FAILED in states:
        return EXIT_FAILED
    if OrderState.PENDING in states:
        return EXIT_PENDING
    return EXIT_OK


async def _poll(
    connector: Connector[CASettings],
    order_ids: Sequence[str],
    max_wait: float | None,
    display: _Display,
) -> None:
    from ._fleet import poll_many

    async with connector:
        display.start()
        try:
            async with poll_many(
                connector, order_ids, concurrency=min(10, len(order_ids)), max_wait=max_wait
            ) as stream:
                async for status in stream:
                    display.update(status)
        finally:
            display.stop()


def _file_stem(status: OrderStatus) -> str:
    return f"{status.ca}-{quote(status.order_id, safe='')}"


def _write(out: Path, statuses: Sequence[OrderStatus]) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for status in statuses:
        certificate = status.certificate
        if certificate is None:
            continue
        leaf = out / f"{_file_stem(status)}.pem"
        chain = out / f"{_file_stem(status)}.chain.pem"
        try:
            leaf.write_text(certificate.pem)
            chain.write_text(certificate.chain_pem)
        except OSError as exc:
            raise UserError(
                f"cannot write {str(leaf)!r}: {exc.strerror}", hint="choose another --out DIR"
            ) from exc
        files[status.order_id] = [str(leaf), str(chain)]
    return files


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, its causes, contexts and grouped exceptions, each once."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(getattr(current, "exceptions", ()))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _where(error: BaseException) -> str:
    """`` (host:port)`` of the request an httpx error was about, when it says."""
    for cause in _causes(error):
        try:
            url = cause.request.url  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):  # httpx raises RuntimeError when unset
            continue
        return f" ({url.host}:{url.port or (443 if url.scheme == 'https' else 80)})"
    return ""


def _error_text(error: BaseException | None) -> str | None:
    """What went wrong, on one line: the network's words when the network failed.

    ``connection refused (127.0.0.1:9)``, ``cannot resolve the host name (ca.invalid:443)``
    and ``TLS failed: ...`` name the cause a user can act on; any other error is its
    certpoll message (which never holds a credential).
    """
    if error is None:
        return None
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused" + _where(error)
        if isinstance(cause, socket.gaierror):
            return "cannot resolve the host name" + _where(error)
        if isinstance(cause, ssl.SSLError):
            # verify_message: why a certificate was refused; reason: OpenSSL's short name.
            reason = (
                getattr(cause, "verify_message", None)
                or getattr(cause, "reason", None)
                or type(cause).__name__
            )
            return f"TLS failed: {reason}{_where(error)}"
        if isinstance(cause, OSError) and cause.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH):
            return f"{cause.strerror or 'network unreachable'}{_where(error)}".lower()
    return " ".join(str(error).split()) or type(error).__name__


def _describe(status: OrderStatus) -> str:
    if status.state is OrderState.ISSUED and status.certificate is not None:
        cert = status.certificate
        return f"issued  serial {cert.serial}  valid until {cert.not_after:%Y-%m-%d}"
    message = " ".join((status.message or "").split())
    if status.state is OrderState.FAILED:
        return f"failed  {message}"
    last_error = _error_text(status.last_error)
    if last_error is not None:
        return f"pending; last error: {last_error}"
    return f"still pending  {message}"


def _describe_attempt(details: PollDetails) -> str:
    line = f"{details.ca} {details.order_id}: attempt {details.attempt} {details.outcome}"
    problem = _error_text(details.error) or details.detail
    if problem:
        line += f": {' '.join(problem.split())}"
    if details.next_wait is not None:
        line += f"; next in {details.next_wait:.0f} s"
    return line


class _Display:
    """One line per order: live (rich) while polling, or printed as each order settles.

    It also keeps what is known of every order (its final status, or the last attempt's
    error), so that an interrupted command still reports each order.
    """

    def __init__(
        self, order_ids: list[str], *, json_out: bool, live: bool, show_attempts: bool = False
    ) -> None:
        self._order_ids = order_ids
        self._json = json_out
        self._live_wanted = live
        self._show_attempts = show_attempts
        self._lines: dict[str, str] = dict.fromkeys(order_ids, "polling…")
        self._settled: dict[str, OrderStatus] = {}
        self._last_error: dict[str, Exception] = {}
        self._stop: Callable[[], None] | None = None
        self._refresh: Callable[[], None] | None = None
        self._out: IO[str] = sys.stdout

    def start(self) -> None:
        if not self._live_wanted:
            return

        def render() -> Table:
            return order_lines([(order_id, self._lines[order_id]) for order_id in self._order_ids])

        shown = contextlib.ExitStack()
        self._refresh = shown.enter_context(live_view(render, self._out))
        self._stop = shown.close

    def attempt(self, details: PollDetails, /) -> None:
        """A poll hook: remember the attempt's error, and print the attempt when asked."""
        if details.order_id is not None and details.error is not None:
            self._last_error[details.order_id] = details.error
        if self._show_attempts:
            print(_describe_attempt(details), file=sys.stderr, flush=True)

    def update(self, status: OrderStatus) -> None:
        self._settled[status.order_id] = status
        self._lines[status.order_id] = _describe(status)
        if self._refresh is not None:
            self._refresh()
        elif not self._json:
            print(f"{status.ca} {status.order_id}  {_describe(status)}", file=self._out)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def statuses(self, ca: CAName) -> list[OrderStatus]:
        """Every order in the given order: settled, or still pending as far as is known."""
        return [
            self._settled.get(order_id)
            or OrderStatus(
                ca=ca,
                order_id=order_id,
                state=OrderState.PENDING,
                message="interrupted before the order settled",
                last_error=self._last_error.get(order_id),
            )
            for order_id in self._order_ids
        ]

    def finish(self, statuses: Sequence[OrderStatus], files: dict[str, list[str]]) -> None:
        if self._json:
            json.dump([_as_json(s, files.get(s.order_id, [])) for s in statuses], self._out)
            print(file=self._out)
            return
        unsettled = [s for s in statuses if s.order_id not in self._settled]
        for status in statuses if self._live_wanted else unsettled:
            print(f"{status.ca} {status.order_id}  {_describe(status)}", file=self._out)
        for written in files.values():
            print(f"wrote {', '.join(written)}", file=self._out)


def _as_json(status: OrderStatus, files: list[str]) -> dict[str, object]:
    certificate = status.certificate
    return {
        "ca": status.ca,
        "order_id": status.order_id,
        "state": status.state.value,
        "message": status.message,
        "last_error": _error_text(status.last_error),
        "retry_after": status.retry_after,
        "serial": None if certificate is None else certificate.serial,
        "not_after": None if certificate is None else certificate.not_after.isoformat(),
        "ca_certificate_id": None if certificate is None else certificate.ca_certificate_id,
        "files": files,
    }


# -- serve-sim --------------------------------------------------------------------------


def _serve_sim(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401
    except ModuleNotFoundError:  # pragma: no cover - uvicorn is a dev dependency
        raise UserError("serve-sim needs uvicorn", hint="pip install 'certpoll[sim]'") from None
    from .testing import Profile, SimulatedCA

    profile = Profile.realistic(args.seed) if args.profile == "realistic" else Profile()
    sim = SimulatedCA(profile=profile, speed=args.speed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
            hint="choose another --port, or --port 0 for a free one",
        ) from exc
    try:
        with tempfile.TemporaryDirectory(prefix="certpoll-sim-") as directory:
            asyncio.run(_run_server(sim, sock, _client_key_pair(Path(directory))))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the simulator is stopped: not an error
    finally:
        sock.close()
    return EXIT_OK


def _client_key_pair(directory: Path) -> tuple[Path, Path]:
    """Write a client certificate and its key (mode 0600) in ``directory``; return both paths.

    The Entrust and GlobalSign connectors load their client key pair even over plain HTTP,
    where the simulator does not ask for it: they need real files all the same.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from .testing import TestPKI

    key = ec.generate_private_key(ec.SECP256R1())
    certificate = TestPKI(name="certpoll serve-sim client").issue(
        public_key=key.public_key(),
        common_name="certpoll serve-sim client",
        dns_names=(),
        serial=x509.random_serial_number(),
    )
    cert_path, key_path = directory / "client.pem", directory / "client-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _announce(origin: str, creds: Credentials, client: tuple[Path, Path], stream: IO[str]) -> None:
    from .testing import MOUNTS

    cert, key = client
    exports = [
        (name, value)
        for ca in _CA_NAMES
        for name, value in creds.environment(
            ca, f"{origin}{MOUNTS[ca]}", client_cert_path=cert, client_key_path=key
        ).items()
    ]
    lines = [
        f"certpoll simulated CA on {origin} (plain HTTP; Ctrl-C stops it)",
        "# the simulator's own test accounts, not secrets; paste these lines in the shell",
        "# that runs certpoll or your application:",
        *(f"export {name}={value}" for name, value in exports),
        "# the client key pair is deleted when the simulator stops",
    ]
    print("\n".join(lines), file=stream, flush=True)


async def _run_server(sim: SimulatedCA, sock: socket.socket, client: tuple[Path, Path]) -> None:
    import uvicorn

    config = uvicorn.Config(sim, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has a flag only
        await asyncio.sleep(0.01)
    if server.started:
        host, port = sock.getsockname()[:2]
        _announce(f"http://{host}:{port}", sim.credentials, client, sys.stdout)
    await serving


# -- worker and orders: the order store ------------------------------------------------------


def _add_store_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    from ._backends.store import StoredState

    store_help = (
        "the order store: sqlite:///path or postgresql://… "
        "(default: the store_url setting, $CERTPOLL_<CA>_STORE_URL or $CERTPOLL_STORE_URL)"
    )
    worker = commands.add_parser(
        "worker",
        help="claim due orders from a store and poll them (SIGTERM stops it cleanly)",
        description="Settings of each CA come from the environment: CERTPOLL_<CA>_*.",
    )
    worker.add_argument("--store", metavar="URL", help=store_help)
    worker.add_argument(
        "--ca", action="append", required=True, help="a CA to poll for (repeat for more)"
    )
    worker.add_argument("--lease", type=_positive_float, default=30.0, help="seconds, default 30")
    worker.add_argument(
        "--claim-interval", type=_positive_float, default=1.0, help="seconds, default 1"
    )
    worker.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    orders = commands.add_parser("orders", help="list a store's orders by state")
    orders.add_argument("--store", metavar="URL", help=store_help)
    orders.add_argument("--state", action="append", choices=[s.value for s in StoredState])
    orders.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _configured_store_url(connectors: Sequence[Connector[CASettings]]) -> str:
    """The ``store_url`` setting of the worker's CAs (one store for all), or the shared one."""
    from ._settings import SHARED_STORE_VARIABLES, shared_store_url

    urls = {connector.settings.store_url for connector in connectors} or {shared_store_url()}
    if len(urls) > 1:
        raise UserError(
            "the CAs' store_url settings name different stores",
            hint="one worker polls one store: pass --store URL",
        )
    url = urls.pop()
    if url is None:
        raise UserError(
            "no order store given",
            hint=f"pass --store URL or set {SHARED_STORE_VARIABLES[0]} "
            "(or CERTPOLL_<CA>_STORE_URL)",
        )
    return url


def _store_command(args: argparse.Namespace) -> int:
    from ._backends.store import StoredState, open_store
    from ._worker import Worker, list_orders, serve_worker

    connectors = [] if args.command == "orders" else [_connector_for(ca, []) for ca in args.ca]
    url = args.store or _configured_store_url(connectors)
    store = open_store(url)
    json_out = args.json or (args.command == "worker" and not sys.stdout.isatty())

    async def run() -> None:
        try:
            if args.command == "orders":
                states = None if args.state is None else [StoredState(s) for s in args.state]
                await list_orders(store, states=states, json_out=json_out, out=sys.stdout)
                return
            lease = args.lease
            worker = Worker(
                store, connectors, lease=lease, claim_interval=min(args.claim_interval, lease)
            )
            await serve_worker(worker, out=sys.stdout, json_lines=json_out)
        finally:
            for connector in connectors:
                await connector.aclose()
            await store.aclose()

    try:
        asyncio.run(run())
    except AuthenticationError as exc:
        raise UserError(str(exc), hint="check the CA's credential settings") from exc
    except CertpollError as exc:
        raise UserError(str(exc), hint="check --store and the CA settings") from exc
    return EXIT_OK
