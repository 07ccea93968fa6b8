"""What every simulated CA shares: routing, the mTLS check, error headers and order scripts."""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import ClassVar, Final

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..._models import CAName
from .._http import (
    ErrorCode,
    Handler,
    Headers,
    Request,
    Response,
    Route,
    json_response,
    route_pattern,
)
from .._orders import Clock, Credentials, Order, OrderBook
from .._scenario import BodyFault

__all__ = ["FAULT_WINDOW", "SimulatedService", "hex_serial"]

#: The message of a fault window's error; the answer carries the status's own reason.
FAULT_WINDOW: Final = "fault window"

_REASONS: Final = {
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class SimulatedService(ABC):
    """One simulated CA API: its routes, who it lets in, and its error shape.

    ``book`` holds the orders of every CA, ``now`` is the simulator's clock.
    """

    name: ClassVar[CAName]
    #: Whether the CA wants a client certificate (refused when the server knows none came).
    mtls: ClassVar[bool] = False

    def __init__(
        self,
        *,
        book: OrderBook,
        credentials: Credentials,
        now: Clock,
    ) -> None:
        self.book = book
        self.credentials = credentials
        self.pki = book.pki
        self.now = now
        self._routes = self.routes()

    @abstractmethod
    def routes(self) -> list[Route]:
        """Every route of this CA, paths relative to its mount."""

    @abstractmethod
    def error_response(self, status: int, text: str, code: ErrorCode, headers: Headers) -> Response:
        """An error in this CA's own shape."""

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """The refusal of a request without valid credentials, or None to let it in."""
        return None

    def order_ids(self, number: int, serial: int) -> tuple[str, str]:
        """A new order's (order id, certificate id) from its running number and serial."""
        return str(number), str(number)

    def new_order(
        self,
        *,
        common_name: str,
        dns_names: Iterable[str],
        public_key: CertificatePublicKeyTypes,
    ) -> Order:
        """A new order of this CA, named by :meth:`order_ids`."""
        return self.book.new_order(
            self.name,
            common_name=common_name,
            dns_names=dns_names,
            public_key=public_key,
            ids=self.order_ids,
        )

    def find(self, order_id: str) -> Order | None:
        """An order by the id a connector holds, for :meth:`SimulatedCA.order`."""
        return self.book.get(self.name, order_id)

    def route(self, method: str, template: str, name: str, handler: Handler) -> Route:
        """A route named ``"<ca>.<name>"``."""
        return Route(method, route_pattern(template), f"{self.name}.{name}", handler)

    def match(self, method: str, path: str) -> tuple[Route | None, re.Match[str] | None]:
        """The route and match of ``path``; a route with no match means the wrong method."""
        wrong_method: Route | None = None
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method:
                return route, match
            wrong_method = route
        return wrong_method, None

    def admit(self, request: Request, route: Route) -> Response | None:
        """The mTLS check, then :meth:`authenticate`."""
        if self.mtls and request.client_cert is False:
            return self.error(403, "a client certificate is required")
        return self.authenticate(request, route)

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> Response:
        """An error in this CA's shape, with ``Retry-After`` when given."""
        headers: tuple[tuple[str, str], ...] = ()
        if retry_after is not None:
            headers = (("Retry-After", str(math.ceil(retry_after))),)
        message = _REASONS.get(status, message) if message == FAULT_WINDOW else message
        return self.error_response(status, message, code, headers)

    def scripted(self, order: Order, answer: Callable[[], Response]) -> Response:
        """The order's scripted error for this status request, or the real answer."""
        index = order.polls
        order.polls += 1
        errors = order.script.errors
        if index >= len(errors):
            return answer()
        error = errors[index]
        if isinstance(error, BodyFault):
            return _broken(answer(), error)
        return self.error(error, "scripted error", retry_after=order.script.retry_after)


def _broken(response: Response, fault: BodyFault) -> Response:
    if fault is BodyFault.NOT_JSON:
        page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
        return Response(200, page, "text/html")
    if fault is BodyFault.TRUNCATED:
        return Response(200, response.body[: max(1, len(response.body) // 2)])
    try:
        value = json.loads(response.body)
    except ValueError:  # pragma: no cover - every scripted answer is JSON
        value = {}
    if isinstance(value, dict):
        value.pop("status", None)
    return json_response(200, value)


def hex_serial(serial: int) -> str:
    """A serial number in upper-case hex of whole bytes."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text
