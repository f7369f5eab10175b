"""Service settings: limits, rate limit, timeouts, proxies and authentication.

They come from the ``service:`` section of the same YAML config file that describes destinations
(``--config`` / ``BECARE_CONFIG``), so one file configures a deployment. The section is checked by
pydantic models in the same way as the rest of the file (``adapter.forwarding.settings``): unknown
keys are errors, every number has a range, and ``"false"`` is false.

Secrets never sit in the file: an API key is given by its SHA-256 (``key_sha256``) or read from an
environment variable (``key_env``); the JWT secret only from the environment (``hs256_secret_env``).
A plaintext ``key`` or ``hs256_secret`` is refused with a message saying so.

Example::

    service:
      max_body_bytes: 5242880
      request_timeout: 30
      rate_limit: {per_second: 20, burst: 40}
      suppress: suppressions.yaml    # accepted issues, for every validation (relative to this file)
      gitb:                          # the GITB validation service (POST /gitb/validation)
        fetch_allow: [https://fhir.example.be/fhir/]   # URIs it may fetch content from (none by default)
      trust_forwarded_for: true      # behind a reverse proxy ...
      trusted_proxies: 1             # ... this many of them, each appending to X-Forwarded-For
      auth:
        api_keys:
          - {id: vendor-a, key_env: BECARE_KEY_VENDOR_A, scopes: [validate, submit, read]}
          - {id: auditor, key_sha256: "9f86d0...", scopes: [audit]}
        jwt:
          hs256_secret_env: BECARE_JWT_SECRET
          public_keys: [/etc/becare/issuer.pem]     # RS256 / ES256
          issuer: https://idp.example.be
          audience: becare
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_SCOPES: frozenset[str] = frozenset({"validate", "submit", "read"})
ALL_SCOPES: frozenset[str] = frozenset({"validate", "submit", "read", "audit"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

MIB = 1024 * 1024
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """The service section of the config file is unusable; ``becare serve`` exits 2."""


# -- what the rest of the service uses ---------------------------------------------------------------
@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str  # hex digest of the key; the key itself is never kept
    scopes: frozenset[str] = DEFAULT_SCOPES


@dataclass(frozen=True)
class JwtConfig:
    hs256_secret: str | None = None  # read from the environment (hs256_secret_env), never the file
    public_keys: tuple[str, ...] = ()  # PEM texts (RSA or EC)
    issuer: str | None = None
    audience: str | None = None
    leeway: int = 30

    @property
    def configured(self) -> bool:
        return bool(self.hs256_secret or self.public_keys)


@dataclass(frozen=True)
class AuthConfig:
    api_keys: tuple[ApiKey, ...] = ()
    jwt: JwtConfig = field(default_factory=JwtConfig)

    @property
    def configured(self) -> bool:
        return bool(self.api_keys) or self.jwt.configured


@dataclass(frozen=True)
class RateLimit:
    per_second: float = 50.0
    burst: int = 100

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


@dataclass(frozen=True)
class GitbConfig:
    """``service.gitb``: what the GITB validation service may fetch for ``embeddingMethod=URI``.

    An unrestricted fetch is a server-side request forgery hole, so nothing is fetched unless a
    prefix here allows it (same scheme, host and port; the path starts with the prefix's path)."""

    fetch_allow: tuple[str, ...] = ()
    fetch_max_bytes: int = 10 * MIB
    fetch_timeout: float = 10.0


@dataclass(frozen=True)
class ServiceConfig:
    max_body_bytes: int = 10 * MIB
    request_timeout: float = 60.0
    rate_limit: RateLimit = field(default_factory=RateLimit)
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Behind reverse proxies: the client is taken from X-Forwarded-For. Each proxy appends the
    # address it received the request from, so the client is the entry ``trusted_proxies`` from the
    # right (everything left of it was written by the client and proves nothing); or, with
    # ``trusted_networks``, the right-most entry outside those networks.
    trust_forwarded_for: bool = False
    trusted_proxies: int = 1
    trusted_networks: tuple[IpNetwork, ...] = ()
    # A body over max_body_bytes is still read (and thrown away) up to this many bytes, so a client
    # that sends the whole body before reading gets its 413 instead of a connection reset.
    drain_bytes: int = 64 * MIB
    # ``service.suppress``: adapter.validation.suppressions.Suppression entries applied to every
    # validation the service makes ($validate, POST /fhir, GITB), so one verdict everywhere
    suppressions: tuple[Any, ...] = ()
    gitb: GitbConfig = field(default_factory=GitbConfig)


# -- the file's shape ---------------------------------------------------------------------------------
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NO_CLEAR_KEY = (
    "a key in clear is not accepted in the config file: put it in an environment variable and name "
    "that variable with key_env, or give the key's SHA-256 as key_sha256 "
    "(printf %s \"$KEY\" | sha256sum)"
)
_NO_CLEAR_SECRET = (
    "the HS256 secret is not accepted in the config file: put it in an environment variable and "
    "name that variable with hs256_secret_env"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _none_is_empty(value: Any) -> Any:
    """``auth:`` with everything under it commented out is YAML null: the defaults."""
    return {} if value is None else value


class ApiKeySection(_Model):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    key_env: str | None = Field(None, pattern=_ENV_NAME)
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    key: str | None = None  # only so that it is refused with a message that says what to do
    scopes: tuple[Literal["validate", "submit", "read", "audit"], ...] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeySection:
        if self.key is not None:
            raise ValueError(_NO_CLEAR_KEY)
        if self.scopes is not None and not self.scopes:
            raise ValueError("scopes: give at least one (validate, submit, read, audit), or leave it out")
        if bool(self.key_env) == bool(self.key_sha256):
            raise ValueError("give key_sha256 or key_env (exactly one)")
        return self


class JwtSection(_Model):
    hs256_secret_env: str | None = Field(None, pattern=_ENV_NAME)
    hs256_secret: str | None = None  # refused, see _no_clear_secret
    public_keys: tuple[str, ...] = ()  # PEM files (relative to the config file) or PEM texts
    issuer: str | None = None
    audience: str | None = None
    leeway: int = Field(30, ge=0, le=600)

    @model_validator(mode="after")
    def _no_clear_secret(self) -> JwtSection:
        if self.hs256_secret is not None:
            raise ValueError(_NO_CLEAR_SECRET)
        return self


class AuthSection(_Model):
    api_keys: tuple[ApiKeySection, ...] = ()
    jwt: JwtSection = JwtSection()

    @field_validator("api_keys", mode="before")
    @classmethod
    def _no_keys(cls, value: Any) -> Any:
        return () if value is None else value

    _null_jwt = field_validator("jwt", mode="before")(lambda cls, v: _none_is_empty(v))

    @model_validator(mode="after")
    def _unique(self) -> AuthSection:
        ids = [k.id for k in self.api_keys]
        if len(set(ids)) != len(ids):
            raise ValueError("api key ids must be unique")
        return self


class RateLimitSection(_Model):
    per_second: float = Field(50.0, ge=0, le=1_000_000)  # 0: no rate limit
    burst: int = Field(100, ge=1, le=1_000_000)


class GitbSection(_Model):
    fetch_allow: tuple[str, ...] = ()
    fetch_max_bytes: int = Field(10 * MIB, ge=1024, le=1024 * MIB)
    fetch_timeout: float = Field(10.0, gt=0, le=300)

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _no_prefixes(cls, value: Any) -> Any:
        return () if value is None else value

    @field_validator("fetch_allow")
    @classmethod
    def _absolute_http(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from urllib.parse import urlsplit

        for prefix in value:
            parts = urlsplit(prefix)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
                raise ValueError(f"{prefix!r}: give an absolute http(s) URL prefix, without credentials")
        return value


class ServiceSection(_Model):
    max_body_bytes: int = Field(10 * MIB, ge=1024, le=1024 * MIB)
    request_timeout: float = Field(60.0, ge=0, le=3600)  # 0: no timeout
    rate_limit: RateLimitSection = RateLimitSection()
    auth: AuthSection = AuthSection()
    trust_forwarded_for: bool = False
    trusted_proxies: int | tuple[str, ...] = 1
    drain_bytes: int = Field(64 * MIB, ge=0, le=1024 * MIB)
    suppress: str | None = Field(None, min_length=1)  # a suppression file, relative to the config file
    gitb: GitbSection = GitbSection()

    _nulls = field_validator("rate_limit", "auth", "gitb", mode="before")(lambda cls, v: _none_is_empty(v))

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: int | tuple[str, ...]) -> int | tuple[str, ...]:
        if isinstance(value, int):
            if not 1 <= value <= 16:
                raise ValueError("a number of proxies from 1 to 16, or a list of their addresses/networks")
            return value
        if not value:
            raise ValueError("an empty list trusts no proxy: set trust_forwarded_for: false instead")
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _proxies_need_trust(self) -> ServiceSection:
        if "trusted_proxies" in self.model_fields_set and not self.trust_forwarded_for:
            raise ValueError("trusted_proxies is only used with trust_forwarded_for: true")
        return self


# -- building the config -----------------------------------------------------------------------------
def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: environment variable {name} is not set")
    return value


def _where(loc: tuple[Any, ...]) -> str:
    out = "service"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` (a pydantic error location) accepts, for the error message."""
    model: Any = ServiceSection
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *get_args(annotation)]
        candidates += [a for c in candidates for a in get_args(c)]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not models:
            return []
        model = models[0]
    return [name for name in model.model_fields if name not in ("key", "hs256_secret")]


def _describe(exc: ValidationError) -> str:
    """One line per problem, each with the path of the key: ``service.auth.api_keys[0]: ...``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "extra_forbidden" and loc:
            try:
                expected = ", ".join(_keys_at(loc[:-1]))
            except (KeyError, AttributeError):
                expected = ""
            hint = f" (expected some of: {expected})" if expected else ""
            lines.append(f"{_where(loc[:-1])}: unknown key '{loc[-1]}'{hint}")
            continue
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{_where(loc)}: {msg}")
    return "; ".join(dict.fromkeys(lines))


def _api_key(raw: ApiKeySection) -> ApiKey:
    if raw.key_sha256:
        digest = raw.key_sha256.lower()
    else:
        digest = hash_key(_env(str(raw.key_env), f"api key {raw.id}"))
    scopes = frozenset(raw.scopes) if raw.scopes else DEFAULT_SCOPES
    return ApiKey(id=raw.id, sha256=digest, scopes=scopes)


def _read_pem(value: str, base: Path | None) -> str:
    if "-----BEGIN" in value:
        return value
    path = Path(value)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        return path.read_text(encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"jwt public key {value}: {exc.strerror}") from None


def _jwt(raw: JwtSection, base: Path | None) -> JwtConfig:
    secret = None
    if raw.hs256_secret_env:
        secret = _env(raw.hs256_secret_env, "jwt hs256 secret")
        if len(secret) < 32:
            raise ConfigError(
                f"jwt hs256 secret (from {raw.hs256_secret_env}) must be at least 32 characters"
            )
    return JwtConfig(
        hs256_secret=secret,
        public_keys=tuple(_read_pem(k, base) for k in raw.public_keys),
        issuer=raw.issuer,
        audience=raw.audience,
        leeway=raw.leeway,
    )


def service_config_from_mapping(section: dict[str, Any] | None, base: Path | None = None) -> ServiceConfig:
    """Build the config from the parsed ``service:`` mapping (pure apart from env/PEM reads)."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError("'service' must be a mapping")
    try:
        raw = ServiceSection.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    proxies = raw.trusted_proxies
    return ServiceConfig(
        max_body_bytes=raw.max_body_bytes,
        request_timeout=raw.request_timeout,
        rate_limit=RateLimit(per_second=raw.rate_limit.per_second, burst=raw.rate_limit.burst),
        auth=AuthConfig(api_keys=tuple(_api_key(k) for k in raw.auth.api_keys), jwt=_jwt(raw.auth.jwt, base)),
        trust_forwarded_for=raw.trust_forwarded_for,
        trusted_proxies=proxies if isinstance(proxies, int) else 1,
        trusted_networks=()
        if isinstance(proxies, int)
        else tuple(ipaddress.ip_network(p, strict=False) for p in proxies),
        drain_bytes=raw.drain_bytes,
        suppressions=_suppressions(raw.suppress, base),
        gitb=GitbConfig(fetch_allow=raw.gitb.fetch_allow, fetch_max_bytes=raw.gitb.fetch_max_bytes,
                        fetch_timeout=raw.gitb.fetch_timeout),
    )


def _suppressions(value: str | None, base: Path | None) -> tuple[Any, ...]:
    """The ``service.suppress`` file, checked at start: a bad file stops the service (exit 2)."""
    if not value:
        return ()
    from adapter.validation.suppressions import SuppressionError, load_suppressions

    path = Path(value)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        return load_suppressions(path)
    except SuppressionError as exc:
        raise ConfigError(f"service.suppress: {exc}") from None


def load_service_config(config_path: str | os.PathLike[str] | None) -> ServiceConfig:
    """Read the ``service:`` section of the config file (defaults when there is no file)."""
    if not config_path:
        return ServiceConfig()
    path = Path(config_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping")
    return service_config_from_mapping(data.get("service"), base=path.parent)


def check_bind(host: str, config: ServiceConfig) -> str | None:
    """Why binding ``host`` is refused, or None: anything but loopback needs authentication."""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    if config.auth.configured:
        return None
    return (
        f"refusing to listen on {host} without authentication: configure service.auth "
        "(api_keys or jwt) in the --config file, or bind to 127.0.0.1"
    )
