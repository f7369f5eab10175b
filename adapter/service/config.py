"""Service settings: limits, rate limit, timeouts and authentication.

They come from the ``service:`` section of the same YAML config file that describes destinations
(``--config`` / ``BECARE_CONFIG``), so one file configures a deployment. Secrets are never written
in the file in clear when it can be avoided: an API key is given by its SHA-256 (``key_sha256``) or
read from an environment variable (``key_env``); likewise the JWT secret (``hs256_secret_env``).

Example::

    service:
      max_body_bytes: 5242880
      request_timeout: 30
      rate_limit: {per_second: 20, burst: 40}
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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SCOPES: frozenset[str] = frozenset({"validate", "submit", "read"})
ALL_SCOPES: frozenset[str] = frozenset({"validate", "submit", "read", "audit"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ConfigError(ValueError):
    """The service section of the config file is unusable; ``becare serve`` exits 2."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str  # hex digest of the key; the key itself is never kept
    scopes: frozenset[str] = DEFAULT_SCOPES


@dataclass(frozen=True)
class JwtConfig:
    hs256_secret: str | None = None
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
class ServiceConfig:
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout: float = 60.0
    rate_limit: RateLimit = field(default_factory=RateLimit)
    auth: AuthConfig = field(default_factory=AuthConfig)
    trust_forwarded_for: bool = False  # behind a reverse proxy: rate-limit by X-Forwarded-For


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: environment variable {name} is not set")
    return value


def _api_key(raw: Any, index: int) -> ApiKey:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise ConfigError(f"service.auth.api_keys[{index}]: needs an 'id'")
    key_id = str(raw["id"])
    if raw.get("key_sha256"):
        digest = str(raw["key_sha256"]).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"api key {key_id}: key_sha256 must be 64 hex digits")
    elif raw.get("key_env"):
        digest = hash_key(_env(str(raw["key_env"]), f"api key {key_id}"))
    elif raw.get("key"):
        digest = hash_key(str(raw["key"]))
    else:
        raise ConfigError(f"api key {key_id}: give key_sha256, key_env or key")
    scopes = frozenset(str(s) for s in raw.get("scopes") or DEFAULT_SCOPES)
    unknown = scopes - ALL_SCOPES
    if unknown:
        raise ConfigError(f"api key {key_id}: unknown scopes {sorted(unknown)}")
    return ApiKey(id=key_id, sha256=digest, scopes=scopes)


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


def _jwt(raw: Any, base: Path | None) -> JwtConfig:
    if not raw:
        return JwtConfig()
    if not isinstance(raw, dict):
        raise ConfigError("service.auth.jwt must be a mapping")
    secret = raw.get("hs256_secret")
    if raw.get("hs256_secret_env"):
        secret = _env(str(raw["hs256_secret_env"]), "jwt hs256 secret")
    if secret is not None and len(str(secret)) < 32:
        raise ConfigError("jwt hs256 secret must be at least 32 characters")
    keys = tuple(_read_pem(str(k), base) for k in raw.get("public_keys") or ())
    return JwtConfig(
        hs256_secret=str(secret) if secret else None,
        public_keys=keys,
        issuer=raw.get("issuer"),
        audience=raw.get("audience"),
        leeway=int(raw.get("leeway", 30)),
    )


_SERVICE_KEYS = {"max_body_bytes", "request_timeout", "rate_limit", "auth", "trust_forwarded_for"}
_JWT_KEYS = {"hs256_secret", "hs256_secret_env", "public_keys", "issuer", "audience", "leeway"}
_API_KEY_KEYS = {"id", "key", "key_env", "key_sha256", "scopes"}


def _known(raw: Any, where: str, allowed: set[str]) -> None:
    """A misspelt key must not silently drop a setting (say, leave the service without auth)."""
    if isinstance(raw, dict):
        unknown = sorted(str(k) for k in raw if k not in allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def service_config_from_mapping(section: dict[str, Any] | None, base: Path | None = None) -> ServiceConfig:
    """Build the config from the parsed ``service:`` mapping (pure apart from env/PEM reads)."""
    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError("'service' must be a mapping")
    _known(section, "service", _SERVICE_KEYS)
    auth_raw = section.get("auth") or {}
    if not isinstance(auth_raw, dict):
        raise ConfigError("service.auth must be a mapping")
    _known(auth_raw, "service.auth", {"api_keys", "jwt"})
    _known(section.get("rate_limit") or {}, "service.rate_limit", {"per_second", "burst"})
    _known(auth_raw.get("jwt") or {}, "service.auth.jwt", _JWT_KEYS)
    for i, k in enumerate(auth_raw.get("api_keys") or ()):
        _known(k, f"service.auth.api_keys[{i}]", _API_KEY_KEYS)
    keys = tuple(_api_key(k, i) for i, k in enumerate(auth_raw.get("api_keys") or ()))
    if len({k.id for k in keys}) != len(keys):
        raise ConfigError("api key ids must be unique")
    rl_raw = section.get("rate_limit") or {}
    try:
        return ServiceConfig(
            max_body_bytes=int(section.get("max_body_bytes", ServiceConfig.max_body_bytes)),
            request_timeout=float(section.get("request_timeout", ServiceConfig.request_timeout)),
            rate_limit=RateLimit(
                per_second=float(rl_raw.get("per_second", RateLimit.per_second)),
                burst=int(rl_raw.get("burst", RateLimit.burst)),
            ),
            auth=AuthConfig(api_keys=keys, jwt=_jwt(auth_raw.get("jwt"), base)),
            trust_forwarded_for=bool(section.get("trust_forwarded_for", False)),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"service section: {exc}") from None


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
