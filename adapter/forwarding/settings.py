"""Forwarding configuration: destinations, credentials, routing, metahub, outbox tuning.

Read from a YAML file (``--config`` or ``BECARE_CONFIG``) and/or built from ``--forward-to`` and
``--db``. Every problem is reported as ``ConfigError`` with the path of the offending key, so a
bad deployment fails at start with one readable message instead of at the first delivery.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapter.database import is_memory_sqlite

from .region import REGIONS

CONFIG_ENV = "BECARE_CONFIG"
DEFAULT_DB_URL = "sqlite:///becare.db"
FORWARD_TO_NAME = "forward-to"


class ConfigError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Model):
    """Credentials for one endpoint. Secrets may come from the environment (``*_env``)."""

    bearer_token: str | None = None
    bearer_token_env: str | None = None
    client_cert: str | None = None  # PEM certificate (chain) for mutual TLS
    client_key: str | None = None  # PEM private key (omit if inside client_cert)
    ca_bundle: str | None = None  # PEM CA file to verify the server
    verify: bool = True

    @model_validator(mode="after")
    def _files_exist(self) -> AuthConfig:
        for name in ("client_cert", "client_key", "ca_bundle"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name}: file not found: {path}")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key given without client_cert")
        if self.bearer_token and self.bearer_token_env:
            raise ValueError("give bearer_token or bearer_token_env, not both")
        return self

    def token(self) -> str | None:
        if self.bearer_token_env:
            value = os.environ.get(self.bearer_token_env)
            if not value:
                raise ConfigError(f"environment variable {self.bearer_token_env} (bearer token) is not set")
            return value
        return self.bearer_token


class PartyConfig(_Model):
    """An hcparty as KMEHR writes it: an organisation (NIHII and/or CBE, name) or a professional."""

    nihii: str | None = Field(None, pattern=r"^[0-9]{8,11}$")
    cbe: str | None = Field(None, pattern=r"^[0-9]{10}$")
    inss: str | None = Field(None, pattern=r"^[0-9]{11}$")
    cd: str = "orghospital"  # CD-HCPARTY: orghospital, orgprimarycarecenter, persnurse, ...
    name: str | None = None
    firstname: str | None = None
    familyname: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> PartyConfig:
        if not (self.nihii or self.cbe or self.inss):
            raise ValueError("give the party's nihii, cbe or inss")
        if not (self.name or (self.firstname and self.familyname)):
            raise ValueError("give the party's name (an organisation) or firstname and familyname")
        return self


class EHealthConfig(_Model):
    """The organisation's eHealth identity: one certificate, the STS and the ETK depot.

    The PKCS#12 password never sits in the file: ``password_env`` names the variable holding it.
    """

    certificate: str  # PKCS#12 (.p12) eHealth certificate of the organisation
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sts_url: str
    etk_url: str
    organisation: PartyConfig
    professional: PartyConfig | None = None  # when a professional, not only the organisation, signs
    software_name: str = "becare"
    timeout: float = Field(30.0, gt=0, le=600)
    token_lifetime: float = Field(4 * 3600.0, ge=300, le=24 * 3600)
    auth: AuthConfig = AuthConfig()  # TLS towards the STS and the ETK depot (CA bundle, proxy-free mTLS)

    _urls = field_validator("sts_url", "etk_url")(lambda cls, v: _check_url(v))

    @field_validator("certificate")
    @classmethod
    def _exists(cls, value: str) -> str:
        if not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value


class EtkConfig(_Model):
    """Whose encryption token (ETK) the payload is encrypted for: the hub's identifier at the depot."""

    type: str = "CBE"  # CBE, NIHII-HOSPITAL, EHP, ...
    value: str
    application_id: str = ""


class HubConfig(_Model):
    """A hubservices v3 endpoint: which protocol version, which hub, what to check before a put."""

    version: Literal["3.2", "3.5"] = "3.5"  # 3.2 carries KMEHR 1.19, 3.5 KMEHR 1.26
    id: str = Field(pattern=r"^[0-9]{8,11}$")  # the hub's NIHII (its hcparty id in KMEHR)
    name: str
    etk: EtkConfig
    check_consent: bool = True
    check_therapeutic_link: bool = True
    therapeutic_link_type: str | None = None  # CD-THERAPEUTICLINK filter; none: any active link
    lang: Literal["nl", "fr", "de", "en"] | None = None  # the summary's language; none: the person's
    attach_bundle: bool = True  # carry the whole FHIR Bundle in the transaction


class DestinationConfig(_Model):
    kind: str = "fhir-rest"
    url: str
    timeout: float = Field(30.0, gt=0, le=600)
    auth: AuthConfig = AuthConfig()
    headers: dict[str, str] = {}
    # mhd only: identifiers that ITI-65 wants for the submission set
    source_id: str | None = None  # ihe-sourceId, e.g. urn:oid:1.3.6.1.4.1.21297.1.99
    # fhir-rest and mhd: what the receiver offers so that a bundle whose first attempt had an
    # unknown outcome (reply lost, sender killed) is not stored twice. `idempotency-key` (the
    # default): it honours the Idempotency-Key header every request carries; we cannot check that,
    # so delivery is at-least-once unless it does. `conditional-create`: If-None-Exist on Bundles
    # stored at {base}/Bundle. `search`: GET {base}/Bundle?identifier= (mhd: GET
    # {base}/DocumentReference?identifier=) before any re-send. `none`: nothing, at-least-once.
    exactly_once: Literal["idempotency-key", "conditional-create", "search", "none"] | None = None
    # kmehr-hub only: the hub, and the eHealth identity (copied from the top-level `ehealth:`
    # section unless the destination has its own)
    hub: HubConfig | None = None
    ehealth: EHealthConfig | None = None

    _url = field_validator("url")(lambda cls, v: _check_url(v))

    @model_validator(mode="after")
    def _kind_sections(self) -> DestinationConfig:
        if self.kind == "kmehr-hub":
            if self.hub is None:
                raise ValueError("a kmehr-hub destination needs a `hub:` section (version, id, name, etk)")
            if self.ehealth is None:
                raise ValueError("a kmehr-hub destination needs the `ehealth:` section "
                                 "(certificate, STS, ETK)")
        elif self.hub is not None:
            raise ValueError(f"`hub:` is only for kind kmehr-hub, not {self.kind}")
        if self.exactly_once is not None and self.kind == "kmehr-hub":
            raise ValueError("exactly_once does not apply to kmehr-hub: it looks its transactions up at "
                             "the hub (GetTransactionList) before any second put")
        if self.exactly_once == "conditional-create" and self.kind == "mhd":
            raise ValueError("exactly_once: conditional-create is not possible for mhd (an ITI-65 "
                             "transaction); use search (the DocumentReference by identifier) or "
                             "idempotency-key")
        return self

    @property
    def delivery_guarantee(self) -> str:
        """``exactly_once`` with its default: what the receiver offers against duplicates."""
        return self.exactly_once or "idempotency-key"


class RoutingConfig(_Model):
    # region -> one destination, or several (a regional platform and the region's hub)
    by_region: dict[str, str | list[str]] = {}
    default: list[str] = []
    allow_explicit: bool = True

    @field_validator("by_region")
    @classmethod
    def _regions(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for region, targets in value.items():
            if region not in REGIONS:
                raise ValueError(f"unknown region {region!r} (one of: {', '.join(REGIONS)})")
            if isinstance(targets, list) and not targets:
                raise ValueError(f"{region}: give at least one destination")
        return value

    def region_targets(self, region: str) -> list[str]:
        """The destinations of ``region`` (none when the region has no rule)."""
        targets = self.by_region.get(region, [])
        return [targets] if isinstance(targets, str) else list(targets)

    @field_validator("default", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class MetahubConfig(_Model):
    url: str
    timeout: float = Field(10.0, gt=0, le=120)
    auth: AuthConfig = AuthConfig()
    hubs: dict[str, str] = {}  # hub id answered by the locator -> destination name
    route_to_hubs: bool = True  # also deliver to the hubs that hold data for the person
    require_ssin: bool = True  # a bundle without SSIN cannot be checked: blocked

    _url = field_validator("url")(lambda cls, v: _check_url(v))


class OutboxConfig(_Model):
    db: str | None = None
    workers: int = Field(8, ge=0, le=64)
    batch: int = Field(8, ge=1, le=500)
    max_attempts: int = Field(8, ge=1, le=1000)
    backoff_base: float = Field(1.0, gt=0)
    backoff_cap: float = Field(300.0, gt=0)
    retry_after_max: float = Field(3600.0, gt=0)
    lease_seconds: float | None = Field(None, gt=0)
    poll_interval: float = Field(0.5, gt=0, le=60)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    # deliver from a child process (`becare outbox work`) instead of threads of the service:
    # accepting and delivering then each have a core (Python runs one thread at a time).
    # Unset: yes with workers, more than one core and a database that is not in memory.
    process: bool | None = None

    def delivery_process(self, db_url: str) -> bool:
        """Whether ``becare serve`` should deliver from a child process."""
        if self.process is not None:
            return self.process
        # workers: 0 means delivery happens elsewhere (`becare outbox work` on another host)
        return self.workers > 0 and (os.cpu_count() or 1) > 1 and not is_memory_sqlite(db_url)


class Settings(_Model):
    outbox: OutboxConfig = OutboxConfig()
    ehealth: EHealthConfig | None = None
    destinations: dict[str, DestinationConfig] = {}
    routing: RoutingConfig = RoutingConfig()
    metahub: MetahubConfig | None = None
    service: dict[str, Any] = {}  # passed through untouched for the HTTP service
    source: str | None = None  # where the settings came from (file path), for messages

    @model_validator(mode="before")
    @classmethod
    def _share_ehealth(cls, data: Any) -> Any:
        """Every kmehr-hub destination signs with the organisation's one eHealth identity."""
        if not isinstance(data, dict) or not isinstance(data.get("ehealth"), dict):
            return data
        destinations = data.get("destinations")
        if not isinstance(destinations, dict):
            return data
        shared = {}
        for name, dest in destinations.items():
            if isinstance(dest, dict) and dest.get("kind") == "kmehr-hub" and "ehealth" not in dest:
                dest = {**dest, "ehealth": data["ehealth"]}
            shared[name] = dest
        return {**data, "destinations": shared}

    @model_validator(mode="after")
    def _references(self) -> Settings:
        from .destinations import known_kinds

        for name, dest in self.destinations.items():
            if dest.kind not in known_kinds():
                kinds = ", ".join(known_kinds())
                raise ValueError(f"destinations.{name}.kind: unknown kind {dest.kind!r} (one of: {kinds})")
        refs = [(f"routing.by_region.{r}", d) for r in self.routing.by_region
                for d in self.routing.region_targets(r)]
        refs += [("routing.default", d) for d in self.routing.default]
        if self.metahub:
            refs += [(f"metahub.hubs.{h}", d) for h, d in self.metahub.hubs.items()]
        for where, name in refs:
            if name not in self.destinations:
                raise ValueError(f"{where}: unknown destination {name!r}")
        return self

    @property
    def db_url(self) -> str:
        return self.outbox.db or DEFAULT_DB_URL

    @property
    def forwarding_enabled(self) -> bool:
        return bool(self.destinations)


def _format_errors(exc: ValidationError) -> str:
    lines: list[str] = []
    top: set[tuple[tuple[Any, ...], str]] = set()
    for err in exc.errors():
        parts = tuple(p for p in err["loc"] if p != "__root__")
        msg = err["msg"].removeprefix("Value error, ")
        if parts[:1] == ("ehealth",):
            top.add((parts, msg))
        # the shared `ehealth:` section is copied into each kmehr-hub destination: say it once
        elif parts[:1] == ("destinations",) and parts[2:3] == ("ehealth",) and (parts[2:], msg) in top:
            continue
        loc = ".".join(str(p) for p in parts)
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def settings_from_dict(data: dict[str, Any], *, source: str | None = None) -> Settings:
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping")
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(f"{source or 'config'}: {_format_errors(exc)}") from None


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    *,
    forward_to: str | None = None,
    db_url: str | None = None,
) -> Settings:
    """Settings from the file (``config_path`` or ``$BECARE_CONFIG``) and the command line.

    ``forward_to`` replaces the routing: every accepted bundle goes to that one FHIR base (a
    ``fhir-rest`` destination named ``forward-to``); the metahub consent step, if configured,
    still applies. ``db_url`` overrides ``outbox.db``.
    """
    path = config_path or os.environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        data = loaded if loaded is not None else {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
    if forward_to:
        try:
            _check_url(forward_to)
        except ValueError as exc:
            raise ConfigError(f"--forward-to: {exc}") from None
        data = dict(data)
        destinations = dict(data.get("destinations") or {})
        destinations[FORWARD_TO_NAME] = {"kind": "fhir-rest", "url": forward_to}
        data["destinations"] = destinations
        data["routing"] = {"default": [FORWARD_TO_NAME], "allow_explicit": False}
        if isinstance(data.get("metahub"), dict):
            data["metahub"] = {**data["metahub"], "hubs": {}, "route_to_hubs": False}
    if db_url:
        data = dict(data)
        data["outbox"] = {**(data.get("outbox") or {}), "db": db_url}
    return settings_from_dict(data, source=str(path) if path else None)
