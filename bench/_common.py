"""Shared pieces of the benchmark suite: statistics, clocks, machine info, plots."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import statistics
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import looptime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import certpoll
from certpoll._demo import compressed_loop
from certpoll.testing import OrderScript, Profile, SimulatedCA

__all__ = [
    "Stats",
    "compressed_loop",
    "digicert_settings",
    "machine_info",
    "make_csr",
    "run_virtual",
    "seed_orders",
    "summarize",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stats:
    """The median of several runs, with their min and max."""

    median: float
    low: float
    high: float
    runs: int

    def fmt(self, spec: str = ".3g", unit: str = "") -> str:
        """``median (min–max)`` with ``spec`` and ``unit``."""
        if self.runs == 1 or self.low == self.high:
            return f"{self.median:{spec}}{unit}"
        return f"{self.median:{spec}}{unit} ({self.low:{spec}}–{self.high:{spec}})"


def summarize(values: Iterable[float]) -> Stats:
    """Median, min and max of ``values`` (at least one)."""
    data = list(values)
    if not data:
        raise ValueError("no values to summarize")
    return Stats(statistics.median(data), min(data), max(data), len(data))


def run_virtual(factory: Callable[[], Coroutine[object, object, T]]) -> T:
    """Run a coroutine on a fresh virtual-time loop (looptime): sleeps take no real time."""
    loop = looptime.new_event_loop(start=0)
    try:
        return loop.run_until_complete(factory())
    finally:
        loop.close()


def run_compressed(factory: Callable[[], Coroutine[object, object, T]], speed: float) -> T:
    """Run a coroutine on the demo's compressed-clock loop (``speed`` times faster)."""
    loop = compressed_loop(speed)
    try:
        return loop.run_until_complete(factory())
    finally:
        loop.close()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """The machine, Python and package versions, for the report's header."""
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        **{
            pkg: _version(pkg)
            for pkg in ("certpoll", "httpx", "uvicorn", "tenacity", "stamina", "looptime")
        },
    }


def make_csr(name: str = "bench.example") -> str:
    """A fresh ECDSA P-256 CSR in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def pending_sim(**kwargs: object) -> SimulatedCA:
    """A simulator whose orders wait for approval for ever (about 30 years)."""
    profile = Profile.fixed(OrderScript(approval_for=1e9))
    return SimulatedCA(profile=profile, **kwargs)  # type: ignore[arg-type]


def seed_orders(sim: SimulatedCA, count: int) -> list[str]:
    """``count`` DigiCert orders created directly in ``sim``; returns their ids.

    Submitting 100,000 orders through the API would take minutes (each parses a CSR);
    what is measured is the polling, so the orders are made without a request.
    """
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return [
        sim._new_order(  # private on purpose: bench set-up only, see docstring
            "digicert", common_name=f"o{i}.bench.example", dns_names=(), public_key=public_key
        ).order_id
        for i in range(count)
    ]


def digicert_settings(
    sim_or_url: SimulatedCA | str,
    *,
    rate_limits: Sequence[tuple[int, float]] = (),
    max_wait: float = 3600.0,
) -> certpoll.DigiCertSettings:
    """DigiCert settings for the simulator (its credentials; its in-process URL by default)."""
    creds = SimulatedCA().credentials if isinstance(sim_or_url, str) else sim_or_url.credentials
    url = sim_or_url if isinstance(sim_or_url, str) else sim_or_url.base_urls().digicert
    return certpoll.DigiCertSettings(
        api_key=creds.digicert_api_key,
        org_id=creds.digicert_org_id,
        base_url=url,
        rate_limits=tuple(rate_limits),
        poll_max_wait_seconds=max_wait,
    )


async def gather_limited(coros: Iterable[Coroutine[object, object, T]]) -> list[T]:
    """``asyncio.gather`` of every coroutine: one task each."""
    return list(await asyncio.gather(*coros))


# -- plots ----------------------------------------------------------------------------------


def bar_plot(
    path: Path,
    *,
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: dict[str, Sequence[Stats]],
    log: bool = False,
    goal: float | None = None,
) -> None:
    """Grouped bars (median) with min–max error bars, one group per x label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / max(1, len(series))
    for i, (name, stats) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        medians = [s.median for s in stats]
        errors = [
            [s.median - s.low for s in stats],
            [s.high - s.median for s in stats],
        ]
        ax.bar(xs, medians, width=width, label=name, yerr=errors, capsize=3)
    if goal is not None:
        ax.axhline(goal, color="#dd5555", linestyle="--", linewidth=1, label=f"goal ({goal:g})")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
