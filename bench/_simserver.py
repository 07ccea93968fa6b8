"""Serve the simulated CA over plain HTTP on 127.0.0.1 in its own process.

``python -m bench._simserver`` prints the DigiCert base URL on its first line and serves until
its standard input closes. DigiCert's rate limits are off (workload 1 measures CPU, not
throttling); orders for ``pending.bench.example`` wait for approval for ever.
"""

from __future__ import annotations

import asyncio
import sys

from certpoll.testing import OrderScript, SimulatedCA, serve

PENDING_NAME = "pending.bench.example"


async def main() -> None:
    sim = SimulatedCA(digicert_rate_limits=())
    sim.script_common_name(PENDING_NAME, OrderScript(approval_for=1e9))
    async with serve(sim, tls=False) as served:
        print(served.base_urls.digicert, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
