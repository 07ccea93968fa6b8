"""Workload 5: what people write instead of certpoll, polling the same DigiCert API.

* **Thread per order**: synchronous ``httpx.Client`` calls and ``time.sleep`` between looks,
  one thread per order (what users of python-cert_manager and vcert write): a fixed 10 s
  interval, ``Retry-After`` honoured when present.
* **tenacity**: an ``AsyncRetrying`` loop per order around the same httpx calls, with
  ``wait_random_exponential(multiplier=5, max=300)`` (tenacity's advice for remote APIs).
* **stamina**: a ``stamina.retry_context`` loop per order around the same httpx calls, with
  jittered exponential waits from 5 s up to 300 s (workload 1 only: its CPU per attempt).

Their per-attempt CPU is measured in workload 1 (:mod:`bench.overhead`) and their 429-storm
behaviour in workload 3 (:mod:`bench.storm`); both are here so the peers are written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import httpx
import stamina
from cryptography import x509
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

__all__ = [
    "Routes",
    "attempt_async",
    "attempt_sync",
    "poll_stamina",
    "poll_tenacity",
    "poll_thread",
]

Kind = Literal["issued", "pending", "retry"]
#: The sleep of the thread peer between two looks, seconds.
THREAD_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Routes:
    """DigiCert's status and download URLs and headers, built by hand."""

    base_url: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-DC-DEVKEY": self.api_key, "Accept": "application/json"}

    def status(self, order_id: str) -> str:
        return f"{self.base_url}/order/certificate/{order_id}"

    def download(self, certificate_id: int) -> str:
        return f"{self.base_url}/certificate/{certificate_id}/download/format/pem_all"


def _read_status(response: httpx.Response) -> tuple[Kind, float | None, int]:
    if response.status_code == 429 or response.status_code >= 500:
        after = response.headers.get("Retry-After")
        return "retry", (float(after) if after else None), 0
    response.raise_for_status()
    body = response.json()
    if body["status"] == "issued":
        return "issued", None, int(body["certificate"]["id"])
    return "pending", None, 0


def _read_bundle(response: httpx.Response) -> None:
    response.raise_for_status()
    x509.load_pem_x509_certificates(response.content)


async def attempt_async(
    http: httpx.AsyncClient, routes: Routes, order_id: str
) -> tuple[Kind, float | None]:
    """One look with a bare httpx loop: status, then the bundle when issued (parsed)."""
    kind, after, certificate_id = _read_status(
        await http.get(routes.status(order_id), headers=routes.headers)
    )
    if kind == "issued":
        _read_bundle(await http.get(routes.download(certificate_id), headers=routes.headers))
    return kind, after


def attempt_sync(client: httpx.Client, routes: Routes, order_id: str) -> tuple[Kind, float | None]:
    """:func:`attempt_async`, synchronously."""
    kind, after, certificate_id = _read_status(
        client.get(routes.status(order_id), headers=routes.headers)
    )
    if kind == "issued":
        _read_bundle(client.get(routes.download(certificate_id), headers=routes.headers))
    return kind, after


def poll_thread(
    client: httpx.Client,
    routes: Routes,
    order_id: str,
    *,
    sleep: Callable[[float], object],
    max_attempts: int = 1000,
) -> bool:
    """The thread peer's loop for one order; True once issued."""
    for _ in range(max_attempts):
        kind, after = attempt_sync(client, routes, order_id)
        if kind == "issued":
            return True
        sleep(after if after is not None else THREAD_INTERVAL)
    return False


class _NotYet(Exception):
    pass


async def _until_issued(
    attempts: AsyncIterable[AbstractContextManager[None]],
    http: httpx.AsyncClient,
    routes: Routes,
    order_id: str,
) -> bool:
    """A retry library's attempts around :func:`attempt_async`; True once issued."""
    try:
        async for attempt in attempts:
            with attempt:
                kind, _ = await attempt_async(http, routes, order_id)
                if kind != "issued":
                    raise _NotYet
    except _NotYet:
        return False
    return True


async def poll_tenacity(
    http: httpx.AsyncClient, routes: Routes, order_id: str, *, max_attempts: int = 1000
) -> bool:
    """The tenacity peer's loop for one order; True once issued."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(_NotYet),
        wait=wait_random_exponential(multiplier=5, max=300),
        stop=stop_after_attempt(max_attempts),
        sleep=asyncio.sleep,
        reraise=True,
    )
    return await _until_issued(retrying, http, routes, order_id)


async def poll_stamina(
    http: httpx.AsyncClient, routes: Routes, order_id: str, *, max_attempts: int = 1000
) -> bool:
    """The stamina peer's loop for one order; True once issued."""
    retrying = stamina.retry_context(
        on=_NotYet, attempts=max_attempts, timeout=None, wait_initial=5.0, wait_max=300.0
    )
    return await _until_issued(retrying, http, routes, order_id)
