"""The FastAPI example's service on aiohttp: order certificates, poll in the background.

One ``httpx.AsyncClient`` shared by every connector, created with the application in a
cleanup context (aiohttp's lifespan) and closed with it. ``POST /orders`` (JSON ``ca``,
``common_name``, ``csr_pem``) submits once and polls in the background;
``GET /orders/{ca}/{order_id}`` reads an order; ``GET /orders?state=pending`` lists them.

Run it against the simulated CA::

    certpoll serve-sim --port 8099          # prints the CERTPOLL_* variables to export
    export CERTPOLL_DIGICERT_BASE_URL=...   # and every other line it printed
    python examples/aiohttp_app.py          # http://127.0.0.1:8080/orders

Needs ``aiohttp`` (a dev dependency of certpoll, not of the library).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
from aiohttp import web

import certpoll

logger = logging.getLogger(__name__)

SETTINGS: dict[certpoll.CAName, type[certpoll.CASettings]] = {
    "digicert": certpoll.DigiCertSettings,
    "sectigo": certpoll.SectigoSettings,
    "entrust": certpoll.EntrustSettings,
    "globalsign": certpoll.GlobalSignSettings,
}

#: Any of the four connectors (certpoll.connector_for picks the one the settings are for).
Connector = certpoll.Connector[certpoll.CASettings]


def as_json(status: certpoll.OrderStatus) -> dict[str, object]:
    """An order as the API shows it."""
    certificate = status.certificate
    return {
        "ca": status.ca,
        "order_id": status.order_id,
        "state": status.state.value,
        "message": status.message,
        "serial": None if certificate is None else certificate.serial,
        "certificate_pem": None if certificate is None else certificate.pem,
    }


class OrderBook:
    """The orders of this process, and the background polls that settle them."""

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self.connectors = connectors
        self.orders: dict[tuple[str, str], certpoll.OrderStatus] = {}
        self._polls: set[asyncio.Task[None]] = set()

    async def submit(self, ca: str, common_name: str, csr_pem: str) -> certpoll.OrderStatus:
        connector = self.connectors.get(ca)
        if connector is None:
            raise LookupError(f"{ca!r} is not configured here")
        request = certpoll.CertificateRequest(common_name=common_name, csr_pem=csr_pem)
        status = await connector.issue(request)
        self.orders[(status.ca, status.order_id)] = status
        if status.state is certpoll.OrderState.PENDING:
            task = asyncio.create_task(self._poll(connector, status.order_id))
            self._polls.add(task)  # held here: the loop keeps only weak references
            task.add_done_callback(self._polls.discard)
        return status

    async def _poll(self, connector: Connector, order_id: str) -> None:
        try:
            status = await connector.get_order_status(order_id)
        except certpoll.CertpollError as exc:
            status = certpoll.OrderStatus(
                ca=connector.ca,
                order_id=order_id,
                state=certpoll.OrderState.FAILED,
                message=str(exc),
            )
        self.orders[(status.ca, status.order_id)] = status

    async def aclose(self) -> None:
        """Stop every background poll (on shutdown)."""
        for task in self._polls:
            task.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)


BOOK = web.AppKey("book", OrderBook)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answer is JSON ``{"detail": ...}``, as FastAPI's are."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"detail": exc.text}, status=exc.status)


async def submit(request: web.Request) -> web.Response:
    """``POST /orders``; a body that is not the expected JSON object is a 422."""
    try:
        body = await request.json()
    except ValueError as exc:  # not JSON, or not UTF-8
        raise web.HTTPUnprocessableEntity(text="the body is not JSON") from exc
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("ca", "common_name", "csr_pem")
    ):
        raise web.HTTPUnprocessableEntity(text="expected JSON with ca, common_name, csr_pem")
    try:
        status = await request.app[BOOK].submit(body["ca"], body["common_name"], body["csr_pem"])
    except LookupError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except certpoll.ConfigError as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from exc
    except certpoll.CertpollError as exc:
        raise web.HTTPBadGateway(text=str(exc)) from exc
    return web.json_response(as_json(status), status=201)


async def read(request: web.Request) -> web.Response:
    """``GET /orders/{ca}/{order_id}``."""
    key = (request.match_info["ca"], request.match_info["order_id"])
    status = request.app[BOOK].orders.get(key)
    if status is None:
        raise web.HTTPNotFound(text="no such order")
    return web.json_response(as_json(status))


async def listing(request: web.Request) -> web.Response:
    """``GET /orders[?state=pending]``."""
    state = request.query.get("state")
    orders = request.app[BOOK].orders.values()
    return web.json_response([as_json(s) for s in orders if state in (None, s.state.value)])


def settings_from_env() -> dict[certpoll.CAName, certpoll.CASettings]:
    """The settings of every CA configured in the environment.

    A CA whose settings are missing or wrong is skipped, with a warning saying why (the
    error names the variable), so that ``POST /orders`` to it is not a surprise.
    """
    found: dict[certpoll.CAName, certpoll.CASettings] = {}
    for ca, settings_cls in SETTINGS.items():
        try:
            found[ca] = settings_cls()
        except certpoll.ConfigError as exc:
            logger.warning("%s is not configured, its orders are refused: %s", ca, exc)
    return found


def create_app(
    settings: Mapping[certpoll.CAName, certpoll.CASettings] | None = None,
    *,
    http: Callable[[], httpx.AsyncClient] | None = None,
) -> web.Application:
    """The service; ``settings`` default to the environment, ``http`` builds the client."""

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        chosen = settings_from_env() if settings is None else settings
        if http is None:
            mtls = [
                s
                for s in chosen.values()
                if isinstance(s, certpoll.EntrustSettings | certpoll.GlobalSignSettings)
            ]
            client = httpx.AsyncClient(mounts=certpoll.mtls_mounts(*mtls))
        else:
            client = http()
        async with client:
            connectors: dict[str, Connector] = {
                ca: certpoll.connector_for(s, http=client) for ca, s in chosen.items()
            }
            app[BOOK] = OrderBook(connectors)
            try:
                yield
            finally:
                await app[BOOK].aclose()
                for connector in connectors.values():
                    await connector.aclose()

    app = web.Application(middlewares=[json_errors])
    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/orders", submit)
    app.router.add_get("/orders", listing)
    app.router.add_get("/orders/{ca}/{order_id}", read)
    return app


def main() -> None:
    """Serve the app on 127.0.0.1:8080 with the CAs configured in the environment."""
    web.run_app(create_app(), host="127.0.0.1", port=8080)


if __name__ == "__main__":
    main()
