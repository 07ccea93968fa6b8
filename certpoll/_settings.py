"""Settings for each connector, read from arguments, the environment and ``.env``.

Each field of ``DigiCertSettings`` is read from ``CERTPOLL_DIGICERT_<FIELD>`` and, so that
operators of certctl need not rename anything, from ``CERTCTL_DIGICERT_<FIELD>``; the
``CERTPOLL_`` variable wins when both are set. Arguments win over both. A value that cannot
be used raises :class:`~certpoll.ConfigError` naming the variable; nothing falls back to a
default silently.

Credentials are normalised as they load: surrounding whitespace (the newline a file-based
secret ends with) is stripped; an empty one, a control character inside, or (in a credential
sent as an HTTP header) a character that is not ASCII is a :class:`ConfigError` naming the
variable, never showing the value. Base URLs must be absolute ``http(s)://`` URLs.
"""

from __future__ import annotations

import math
import os
import random
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Self

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ._backends.gate import GATE_SCHEMES
from ._backends.store import STORE_SCHEMES
from ._backends.urls import parse_backend_url
from ._errors import ConfigError
from ._instrumentation import PollHook
from ._poller import DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_MAX_WAIT, BackoffPolicy, Poller
from ._triage import DEFAULT_RETRY_AFTER_CAP

__all__ = [
    "CASettings",
    "DigiCertSettings",
    "EntrustSettings",
    "GlobalSignSettings",
    "SectigoSettings",
]

#: DigiCert documents 100 requests per 5 s and 1000 per 3 min per key; keep 20 % headroom
#: for other tools that share the key and for submits.
DIGICERT_RATE_LIMITS: tuple[tuple[int, float], ...] = ((80, 5.0), (800, 180.0))


#: The store every CA shares unless its own ``CERTPOLL_<CA>_STORE_URL`` names another.
SHARED_STORE_VARIABLES: tuple[str, str] = ("CERTPOLL_STORE_URL", "CERTCTL_STORE_URL")


def shared_store_url() -> str | None:
    """``CERTPOLL_STORE_URL``, else ``CERTCTL_STORE_URL``: from the environment, else from
    the ``.env`` file the settings read (as every other setting); None when neither is set."""
    for source in (os.environ, _dotenv(CASettings)):
        for name in SHARED_STORE_VARIABLES:
            value = (source.get(name) or "").strip()
            if value:
                return value
    return None


class CASettings(BaseSettings):
    """What every connector shares: the poll schedule, the attempt bound and rate limits."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        frozen=True,
        validate_default=True,
        hide_input_in_errors=True,
    )

    #: The CA's name in environment variables: ``CERTPOLL_<env_name>_...``.
    env_name: ClassVar[str] = ""
    #: The field holding the CA's API root.
    url_field: ClassVar[str] = "base_url"
    #: Fields sent as HTTP header values: they must be ASCII.
    header_fields: ClassVar[frozenset[str]] = frozenset()

    poll_max_wait_seconds: float = Field(
        default=DEFAULT_MAX_WAIT,
        description="PollMaxWait: how long get_order_status polls; 0 means the default "
        "(600); inf means no limit.",
    )
    poll_initial_wait_seconds: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    poll_multiplier: float = Field(default=3.0, ge=1, allow_inf_nan=False)
    poll_max_backoff_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    poll_jitter: float = Field(default=0.2, ge=0, lt=1)
    attempt_timeout_seconds: float = Field(
        default=DEFAULT_ATTEMPT_TIMEOUT, gt=0, allow_inf_nan=False
    )
    rate_limits: tuple[tuple[int, float], ...] = Field(
        default=(),
        description="Client-side limits as (requests, per seconds) pairs, all enforced; "
        'in the environment as JSON, e.g. "[[80, 5], [800, 180]]". Empty means none.',
    )
    gate_url: str = Field(
        default="memory://",
        description="Where the gate's rate-limit windows and 429 hold live, shared by every "
        "process that names the same place: memory:// (this process), sqlite:///path (one "
        "host), redis://host:port/db or postgresql://user@host/db (many hosts).",
    )
    store_url: str | None = Field(
        default_factory=shared_store_url,
        description="Where orders that outlive a process live (certpoll worker, "
        "submit_order): sqlite:///path (one host), postgresql://user@host/db (many hosts) or "
        "memory://. Without CERTPOLL_<CA>_STORE_URL, CERTPOLL_STORE_URL (or "
        "CERTCTL_STORE_URL) for every CA; None when neither is set.",
    )
    tls_verify: bool = Field(
        default=True,
        description="Verify the CA's TLS certificate. Only an explicit false (or 0) switches "
        "it off, for the client the connector creates; every connector start then logs a "
        "warning.",
    )
    retry_after_cap_seconds: float = Field(
        default=DEFAULT_RETRY_AFTER_CAP,
        gt=0,
        allow_inf_nan=False,
        description="The longest wait a CA's Retry-After can impose (on one poll, and on "
        "every request through the connector's gate); a longer one is cut to this.",
    )
    follow_redirects: bool = Field(
        default=False,
        description="Follow 3xx answers (at most 5). A redirect to another origin is followed "
        "without the CA credential headers, and never with a request body.",
    )

    @field_validator("poll_max_wait_seconds")
    @classmethod
    def _max_wait(cls, value: float) -> float:
        if math.isnan(value) or value < 0:
            raise ValueError("must be 0 (the default, 600) or a positive number of seconds")
        return DEFAULT_MAX_WAIT if value == 0 else value

    @field_validator("*", mode="after")
    @classmethod
    def _credential(cls, value: object, info: ValidationInfo) -> object:
        # A secret read from a file ends with a newline, which no HTTP header may carry:
        # strip what surrounds it, refuse a control character inside (never show it).
        if isinstance(value, SecretStr):
            text = value.get_secret_value().strip()
            if not text:  # an empty secret file, say: no CA accepts an empty credential
                raise ValueError("is empty (or only whitespace)")
            if any(unicodedata.category(c) == "Cc" for c in text):
                raise ValueError("holds a control character (the value is not shown)")
            value = SecretStr(text)
        if info.field_name in cls.header_fields:
            if isinstance(value, str):  # a header value that is no secret: the same rules
                value = value.strip()
                if any(unicodedata.category(c) == "Cc" for c in value):
                    raise ValueError("holds a control character, which no HTTP header may carry")
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            # httpx cannot encode anything else in a header, and its error quotes the value.
            if not text.isascii():
                raise ValueError(
                    "is sent in an HTTP header, which carries only ASCII characters "
                    "(the value is not shown)"
                )
        return value

    @field_validator("tls_verify", "follow_redirects", mode="before")
    @classmethod
    def _strict_bool(cls, value: object) -> object:
        # pydantic also reads "off", "no", "n", "f" as false: for a switch that turns TLS
        # verification off, accept only an unmistakable spelling.
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise ValueError("must be true or false (or 1 or 0)")
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")

    @field_validator("gate_url")
    @classmethod
    def _gate_url(cls, value: str) -> str:
        parse_backend_url(value, setting=cls.env_var("gate_url"), allowed=GATE_SCHEMES)
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_backend_url(value, setting=cls.env_var("store_url"), allowed=STORE_SCHEMES)
        return value

    @field_validator("rate_limits")
    @classmethod
    def _limits(cls, value: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        for requests, seconds in value:
            if requests < 1 or not (math.isfinite(seconds) and seconds > 0):
                raise ValueError("each limit needs at least 1 request per a positive period")
        return value

    def __init__(self, **values: object) -> None:
        try:
            super().__init__(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise _config_error(type(self), exc, values) from exc
        except SettingsError as exc:  # a complex value (JSON) that does not parse
            found = re.search(r'field "(\w+)"', str(exc))
            field = found.group(1) if found else "?"
            raise ConfigError(
                f"{type(self).__name__}: {_origin(type(self), field, values)}: not valid JSON"
            ) from exc
        self.backoff_policy()  # the four schedule settings must also fit together

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then ``CERTPOLL_<CA>_*``, then ``CERTCTL_<CA>_*``; env before ``.env``."""
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        sources += [EnvSettingsSource(settings_cls, env_prefix=p) for p in cls._prefixes()]
        sources += [DotEnvSettingsSource(settings_cls, env_prefix=p) for p in cls._prefixes()]
        return tuple(sources)

    @classmethod
    def _prefixes(cls) -> tuple[str, str]:
        return (f"CERTPOLL_{cls.env_name}_", f"CERTCTL_{cls.env_name}_")

    @classmethod
    def env_var(cls, field: str) -> str:
        """The ``CERTPOLL_`` environment variable that sets ``field``."""
        return f"{cls._prefixes()[0]}{field.upper()}"

    def base_url_variable(self) -> str:
        """Where the API root comes from, for messages that say it is wrong."""
        return self.env_var(self.url_field)

    def backoff_policy(self) -> BackoffPolicy:
        """The schedule these settings describe."""
        try:
            return BackoffPolicy(
                initial_wait=self.poll_initial_wait_seconds,
                multiplier=self.poll_multiplier,
                max_backoff=self.poll_max_backoff_seconds,
                jitter=self.poll_jitter,
            )
        except ConfigError as exc:
            raise ConfigError(
                f"{self.env_var('poll_max_backoff_seconds')} and "
                f"{self.env_var('poll_initial_wait_seconds')} do not fit together: {exc}"
            ) from exc

    def make_poller(
        self,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        rng: random.Random | None = None,
        hooks: Sequence[PollHook] | None = None,
    ) -> Poller:
        """A :class:`Poller` with this schedule, PollMaxWait and attempt timeout."""
        return Poller(
            self.backoff_policy(),
            max_wait=self.poll_max_wait_seconds,
            attempt_timeout=self.attempt_timeout_seconds,
            clock=clock,
            sleep=sleep,
            rng=rng,
            hooks=hooks,
        )

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        # A backend URL may hold a password: show it as its errors do, without one.
        for name, value in super().__repr_args__():
            if name in ("gate_url", "store_url") and isinstance(value, str):
                value = str(parse_backend_url(value, setting=name, allowed=GATE_SCHEMES))
            yield name, value

    def secret_values(self) -> tuple[str, ...]:
        """Every credential in these settings, so that it can be redacted from any text."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return tuple(
            v.get_secret_value()
            for v in values
            if isinstance(v, SecretStr) and v.get_secret_value()
        )


def _config_error(
    settings_cls: type[CASettings], exc: ValidationError, values: dict[str, object]
) -> ConfigError:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        where = _origin(settings_cls, field, values)
        if not field:  # a check across fields: its message names them
            problems.append(str(error["msg"]).removeprefix("Value error, "))
        elif error["type"] == "missing":
            certpoll_var, certctl_var = (p + field.upper() for p in settings_cls._prefixes())
            problems.append(f"{certpoll_var} is required (or {certctl_var}, or {field}=...)")
        else:
            problems.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return ConfigError(f"{settings_cls.__name__}: " + "; ".join(problems))


def _origin(settings_cls: type[CASettings], field: str, values: dict[str, object]) -> str:
    """Name the argument or environment variable a bad value came from."""
    if field in values:
        return f"{field}= argument"
    # Names are read case-insensitively: name the variable as the user spelled it.
    for names, where in ((list(os.environ), ""), (_dotenv_names(settings_cls), " (from .env)")):
        written = {name.upper(): name for name in names}
        for prefix in settings_cls._prefixes():
            name = written.get(f"{prefix}{field}".upper())
            if name is not None:
                return f"{name}{where}"
    return f"{settings_cls._prefixes()[0]}{field.upper()}"


def _dotenv_names(settings_cls: type[CASettings]) -> list[str]:
    """The variable names the settings' ``.env`` file sets (none if it cannot be read)."""
    return list(_dotenv(settings_cls))


def _dotenv(settings_cls: type[CASettings]) -> dict[str, str | None]:
    """What the settings' ``.env`` file sets (nothing if it cannot be read)."""
    env_file = settings_cls.model_config.get("env_file")
    if not isinstance(env_file, str | os.PathLike) or not Path(env_file).is_file():
        return {}
    try:
        return dotenv_values(env_file)
    except (OSError, UnicodeDecodeError):
        return {}


def _api_url(value: str) -> str:
    """An absolute http(s) URL without a trailing slash (a "/" would give "//v1/...")."""
    url = value.strip().rstrip("/")
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise ValueError("must be an absolute https:// URL")
    if any(c in rest for c in "?#"):
        raise ValueError("must not hold a query or a fragment")
    if "@" in rest.partition("/")[0]:
        # A password there would be shown wherever the URL is (reprs, messages), and
        # certpoll sends the CA's credentials itself.
        raise ValueError("must not hold a user name or password (the value is not shown)")
    return url


class DigiCertSettings(CASettings):
    """DigiCert CertCentral: ``CERTPOLL_DIGICERT_*`` (or ``CERTCTL_DIGICERT_*``)."""

    env_name: ClassVar[str] = "DIGICERT"
    header_fields: ClassVar[frozenset[str]] = frozenset({"api_key"})

    api_key: SecretStr
    org_id: int
    product_type: str = "ssl_basic"
    base_url: str = "https://www.digicert.com/services/v2"
    rate_limits: tuple[tuple[int, float], ...] = DIGICERT_RATE_LIMITS

    _check_base_url = field_validator("base_url")(_api_url)


class SectigoSettings(CASettings):
    """Sectigo Certificate Manager: ``CERTPOLL_SECTIGO_*`` (or ``CERTCTL_SECTIGO_*``)."""

    env_name: ClassVar[str] = "SECTIGO"
    header_fields: ClassVar[frozenset[str]] = frozenset({"customer_uri", "login", "password"})

    customer_uri: str
    login: SecretStr
    password: SecretStr
    org_id: int
    cert_type: int
    term: int = Field(default=365, gt=0)
    base_url: str = "https://cert-manager.com/api"
    external_requester: str | None = None

    _check_base_url = field_validator("base_url")(_api_url)


class EntrustSettings(CASettings):
    """Entrust CA Gateway: ``CERTPOLL_ENTRUST_*`` (or ``CERTCTL_ENTRUST_*``)."""

    env_name: ClassVar[str] = "ENTRUST"
    url_field: ClassVar[str] = "api_url"

    api_url: str
    client_cert_path: Path
    client_key_path: Path
    ca_id: str = Field(min_length=1)
    profile_id: str | None = None

    _check_api_url = field_validator("api_url")(_api_url)


class GlobalSignSettings(CASettings):
    """GlobalSign Atlas HVCA: ``CERTPOLL_GLOBALSIGN_*`` (or ``CERTCTL_GLOBALSIGN_*``)."""

    env_name: ClassVar[str] = "GLOBALSIGN"
    url_field: ClassVar[str] = "api_url"

    api_url: str = "https://emea.api.hvca.globalsign.com:8443/v2"
    api_key: SecretStr
    api_secret: SecretStr
    client_cert_path: Path
    client_key_path: Path
    server_ca_path: Path | None = None

    _check_api_url = field_validator("api_url")(_api_url)

    @model_validator(mode="after")
    def _pin_needs_verification(self) -> Self:
        if self.server_ca_path is not None and not self.tls_verify:
            raise ValueError(
                f"{self.env_var('server_ca_path')} pins the server's CA, so "
                f"{self.env_var('tls_verify')} cannot be false"
            )
        return self
