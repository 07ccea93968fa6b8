"""Draw docs/images/storm-timeline.png: a 429 storm with and without the upstream gate.

Simulates, in virtual time (looptime), 500 pending DigiCert orders polled with
``certpoll.poll_many`` while a fake CertCentral answers every request with
``429 Retry-After: 60`` for ten minutes. Once with the gate (DigiCert's default rate limits
and the shared cooldown), once without (every order only backs off on its own). Run from the
repository root::

    .venv/bin/python docs/_scripts/storm_timeline.py
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import httpx
import looptime
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import certpoll
from certpoll._gate import UpstreamGate

ORDERS = 500
STORM = (60.0, 660.0)
END = 900.0
BUCKET = 10.0
OUT = Path(__file__).resolve().parents[1] / "images" / "storm-timeline.png"


async def simulate(*, gated: bool) -> list[tuple[float, int]]:
    """(loop time, status) of every request the CA saw."""
    seen: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()

    def ca(request: httpx.Request) -> httpx.Response:
        t = loop.time()
        if STORM[0] <= t < STORM[1]:
            seen.append((t, 429))
            return httpx.Response(429, headers={"Retry-After": "60"})
        seen.append((t, 200))
        return httpx.Response(200, json={"id": 1, "status": "pending"})

    settings = certpoll.DigiCertSettings(
        api_key="storm-timeline-demo", org_id=1, base_url="https://dc.invalid/services/v2"
    )
    gate = (
        UpstreamGate(rate_limits=settings.rate_limits)
        if gated
        else UpstreamGate(share_cooldown=False)
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(ca)) as http:
        poller = settings.make_poller(hooks=(), rng=random.Random(1))
        connector = certpoll.DigiCert(settings, http=http, poller=poller, gate=gate)
        order_ids = [str(10_000 + i) for i in range(ORDERS)]
        async with certpoll.poll_many(connector, order_ids, concurrency=50, max_wait=END) as stream:
            async for _ in stream:
                pass
    return seen


def run(*, gated: bool) -> list[tuple[float, int]]:
    loop = looptime.new_event_loop(start=0)
    try:
        return loop.run_until_complete(simulate(gated=gated))
    finally:
        loop.close()


def buckets(seen: list[tuple[float, int]], status: int) -> list[int]:
    counts = [0] * math.ceil(END / BUCKET)
    for t, code in seen:
        if code == status and t < END:
            counts[int(t // BUCKET)] += 1
    return counts


def main() -> None:
    runs = {"without the gate (per-order backoff only)": run(gated=False)}
    runs["with the gate (rate limits + shared cooldown)"] = run(gated=True)
    starts = [i * BUCKET for i in range(math.ceil(END / BUCKET))]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, sharey=True)
    for ax, (title, seen) in zip(axes, runs.items(), strict=True):
        ok, throttled = buckets(seen, 200), buckets(seen, 429)
        ax.bar(starts, ok, width=BUCKET, align="edge", color="#4c72b0", label="answered")
        ax.bar(
            starts,
            throttled,
            width=BUCKET,
            align="edge",
            bottom=ok,
            color="#dd5555",
            label="429 Too Many Requests",
        )
        ax.axvspan(*STORM, color="#dd5555", alpha=0.08, lw=0)
        during = sum(1 for t, _ in seen if STORM[0] <= t < STORM[1])
        ax.set_title(f"{ORDERS} pending orders, {title}: {during} requests during the storm")
        ax.set_ylabel(f"requests per {BUCKET:g} s")
        ax.set_yscale("symlog", linthresh=10)
        ax.legend(loc="upper right")
    axes[-1].set_xlabel("seconds (the CA answers 429, Retry-After: 60, from 60 s to 660 s)")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
