"""A FastAPI service that orders certificates and polls the CAs in the background.

One ``httpx.AsyncClient`` is shared by every connector; the connectors are created in the
lifespan and closed with it. ``POST /orders`` submits an order (once) and, when the CA has
not issued it yet, starts polling it in the background: the request returns at once, and
any number of concurrent requests share the connectors, their rate limits and cooldowns.
``GET /orders/{ca}/{order_id}`` reads an order; ``GET /orders?state=pending`` lists them.

Run it against the simulated CA::

    certpoll serve-sim --port 8099          # prints the CERTPOLL_* variables to export
    export CERTPOLL_DIGICERT_BASE_URL=...   # and every other line it printed
    python examples/fastapi_app.py          # http://127.0.0.1:8000/docs

or with uvicorn's own command: ``uvicorn fastapi_app:app --app-dir examples`` (the module's
``app``), or ``uvicorn --factory fastapi_app:create_app --app-dir examples``.

With ``uvicorn --workers 4``, each worker process has its own connectors: point them at one
shared gate so that together they keep the CA's limits, e.g.
``export CERTPOLL_DIGICERT_GATE_URL=sqlite:////tmp/certpoll-gate.db`` (read with the other
settings; see docs/many-orders.md, "Many processes").

Needs ``fastapi`` and ``uvicorn`` (dev dependencies of certpoll, not of the library).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

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


class OrderIn(BaseModel):
    """An order to submit."""

    ca: certpoll.CAName
    common_name: str
    csr_pem: str


class OrderOut(BaseModel):
    """Where an order stands."""

    ca: certpoll.CAName
    order_id: str
    state: str
    message: str | None = None
    serial: str | None = None
    certificate_pem: str | None = None


def _out(status: certpoll.OrderStatus) -> OrderOut:
    certificate = status.certificate
    return OrderOut(
        ca=status.ca,
        order_id=status.order_id,
        state=status.state.value,
        message=status.message,
        serial=None if certificate is None else certificate.serial,
        certificate_pem=None if certificate is None else certificate.pem,
    )


class OrderBook:
    """The orders of this process, and the background polls that settle them."""

    def __init__(self, connectors: Mapping[certpoll.CAName, Connector]) -> None:
        self.connectors = connectors
        self.orders: dict[tuple[str, str], certpoll.OrderStatus] = {}
        self._polls: set[asyncio.Task[None]] = set()

    async def submit(self, order: OrderIn) -> certpoll.OrderStatus:
        connector = self.connectors.get(order.ca)
        if connector is None:
            raise LookupError(f"{order.ca} is not configured here")
        request = certpoll.CertificateRequest(common_name=order.common_name, csr_pem=order.csr_pem)
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


def default_client(settings: Mapping[certpoll.CAName, certpoll.CASettings]) -> httpx.AsyncClient:
    """One client for every CA, with the mTLS transports Entrust and GlobalSign need."""
    mtls = [
        s
        for s in settings.values()
        if isinstance(s, certpoll.EntrustSettings | certpoll.GlobalSignSettings)
    ]
    return httpx.AsyncClient(mounts=certpoll.mtls_mounts(*mtls))


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
) -> FastAPI:
    """The service; ``settings`` default to the environment, ``http`` builds the client.

    The default client mounts the client certificates of Entrust and GlobalSign
    (:func:`certpoll.mtls_mounts`) for their origins; DigiCert and Sectigo use it as is.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = settings_from_env() if settings is None else settings
        async with default_client(chosen) if http is None else http() as client:
            connectors = {ca: certpoll.connector_for(s, http=client) for ca, s in chosen.items()}
            book = OrderBook(connectors)
            app.state.book = book
            try:
                yield
            finally:
                await book.aclose()
                for connector in connectors.values():
                    await connector.aclose()

    app = FastAPI(title="certpoll example", lifespan=lifespan)

    def book_of() -> OrderBook:
        book: OrderBook = app.state.book
        return book

    @app.post("/orders", status_code=201)
    async def submit(order: OrderIn) -> OrderOut:
        try:
            return _out(await book_of().submit(order))
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        except certpoll.ConfigError as exc:
            raise HTTPException(422, str(exc)) from exc
        except certpoll.CertpollError as exc:
            raise HTTPException(502, str(exc)) from exc

    @app.get("/orders/{ca}/{order_id}")
    async def read(ca: str, order_id: str) -> OrderOut:
        status = book_of().orders.get((ca, order_id))
        if status is None:
            raise HTTPException(404, "no such order")
        return _out(status)

    @app.get("/orders")
    async def listing(state: str | None = None) -> list[OrderOut]:
        return [_out(s) for s in book_of().orders.values() if state in (None, s.state.value)]

    return app


#: The service for ``uvicorn fastapi_app:app``: the environment is read when it starts.
app = create_app()


def main() -> None:
    """Serve the app on 127.0.0.1:8000 with the CAs configured in the environment."""
    uvicorn.run(app, host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
