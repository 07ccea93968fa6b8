"""Renew 2,000 certificates over DigiCert, Sectigo, Entrust and GlobalSign at once.

Runs against the simulated CA in-process (``certpoll.testing``, realistic profile: orders
issued at once, validation taking minutes, approvals taking hours, rejections, a 429 burst,
a 5xx window, Sectigo collects not ready yet), on an event loop whose clock runs 600 times
faster, with a live progress display and a summary table. The same run as ``certpoll demo``
and ``make demo``.

    python examples/batch_renewal.py          # 2,000 orders
    python examples/batch_renewal.py 200      # fewer (or CERTPOLL_DEMO_ORDERS=200)

The library part, per CA (see ``certpoll/_demo.py``, function ``renew``)::

    for request in requests:                          # each submitted once, never retried
        status = await connector.issue(request)
    async with certpoll.poll_many(connector, pending_ids, concurrency=20,
                                  on_progress=show) as stream:
        async for status in stream:                   # in completion order
            ...                                       # ISSUED, FAILED or still PENDING

Every request of a connector passes its gate: DigiCert's rate limits, and one shared
cooldown after a 429, so a 429 burst costs the CA one probe, not one request per order.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from certpoll._demo import DemoResult, demo_orders_from_env, run_demo


def main(argv: Sequence[str] | None = None, *, speed: float = 600.0) -> DemoResult:
    """Run the demo; ``argv`` may hold the number of orders."""
    args = sys.argv[1:] if argv is None else list(argv)
    orders = int(args[0]) if args else demo_orders_from_env()
    return run_demo(orders=orders, speed=speed)


if __name__ == "__main__":
    main()
