"""The one table of which connector serves which settings: :func:`connector_for`."""

from __future__ import annotations

from typing import Final

import httpx

from .._errors import ConfigError
from .._gate import UpstreamGate
from .._models import CAName
from .._poller import Poller
from .._settings import (
    CASettings,
    DigiCertSettings,
    EntrustSettings,
    GlobalSignSettings,
    SectigoSettings,
)
from ._base import Connector
from .digicert import DigiCert
from .entrust import Entrust
from .globalsign import GlobalSign
from .sectigo import Sectigo

__all__ = ["connector_for", "settings_type_for"]

#: Each CA's settings and connector, in the order the documents list the CAs.
_CONNECTORS: Final[tuple[tuple[type[CASettings], type[Connector[CASettings]]], ...]] = (
    (DigiCertSettings, DigiCert),
    (SectigoSettings, Sectigo),
    (EntrustSettings, Entrust),
    (GlobalSignSettings, GlobalSign),
)


def connector_for(
    settings: CASettings,
    *,
    http: httpx.AsyncClient | None = None,
    poller: Poller | None = None,
    gate: UpstreamGate | None = None,
) -> Connector[CASettings]:
    """The connector of the CA that ``settings`` are for (:class:`~certpoll.DigiCert` for
    :class:`~certpoll.DigiCertSettings`, and so on), built with the same options as the
    connector's own constructor.

    >>> connector = certpoll.connector_for(settings, http=client)  # doctest: +SKIP
    """
    for settings_type, connector_type in _CONNECTORS:
        if isinstance(settings, settings_type):
            return connector_type(settings, http=http, poller=poller, gate=gate)
    raise ConfigError(f"no connector takes {type(settings).__name__}; use a CA's own settings")


def settings_type_for(ca: CAName) -> type[CASettings]:
    """The settings class of the CA named ``ca``."""
    for settings_type, connector_type in _CONNECTORS:
        if connector_type.ca == ca:
            return settings_type
    raise ConfigError(f"no CA is named {ca!r}")
