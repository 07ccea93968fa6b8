"""A simulated CA for tests, demos and benchmarks: what Pebble is for ACME clients.

``SimulatedCA`` is an ASGI application speaking the DigiCert, Sectigo, Entrust CA Gateway
and GlobalSign HVCA APIs, issuing real X.509 certificates from a throw-away PKI. Use it
in-process through ``httpx.ASGITransport`` (no sockets), or served on 127.0.0.1 with
:func:`serve` (needs the ``certpoll[sim]`` extra). Script orders with :class:`OrderScript`,
the whole CA with :class:`Fault` windows, and mixes with :class:`Profile`.

This package is not imported by ``import certpoll``. See docs/testing.md.
"""

from .._wire import DIGICERT as DIGICERT
from .._wire import ENTRUST as ENTRUST
from .._wire import GLOBALSIGN as GLOBALSIGN
from .._wire import MOUNTS as MOUNTS
from .._wire import SECTIGO as SECTIGO
from ._app import BaseURLs as BaseURLs
from ._app import SimulatedCA as SimulatedCA
from ._clock import VirtualClock as VirtualClock
from ._orders import Credentials as Credentials
from ._orders import OrderInfo as OrderInfo
from ._pki import Authority as Authority
from ._pki import TestPKI as TestPKI
from ._scenario import BodyFault as BodyFault
from ._scenario import Fault as Fault
from ._scenario import OrderScript as OrderScript
from ._scenario import Profile as Profile
from ._server import ServedCA as ServedCA
from ._server import serve as serve

__all__ = [
    "SimulatedCA",
    "Credentials",
    "BaseURLs",
    "OrderInfo",
    "OrderScript",
    "BodyFault",
    "Fault",
    "Profile",
    "TestPKI",
    "Authority",
    "VirtualClock",
    "serve",
    "ServedCA",
    # The wire contract the connectors build their requests from (certpoll._wire).
    "MOUNTS",
    "DIGICERT",
    "SECTIGO",
    "ENTRUST",
    "GLOBALSIGN",
]
