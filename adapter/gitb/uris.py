"""Which URIs the service may fetch for ``embeddingMethod=URI`` (``service.gitb.fetch_allow``).

An unrestricted fetch would let any caller make the service request internal addresses
(server-side request forgery), so the default list is empty and every redirect is checked again.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``url`` is under one of ``prefixes``: same scheme, host and port, and its path
    starts with the prefix's path. Compared parsed, not as strings, so that
    ``https://fhir.example.be.evil.org`` is not under ``https://fhir.example.be``."""
    try:
        target = urlsplit(url)
        port = target.port or _DEFAULT_PORTS.get(target.scheme)
    except ValueError:
        return False
    if target.scheme not in ("http", "https") or not target.hostname or target.username or target.password:
        return False
    for prefix in prefixes:
        allow = urlsplit(prefix)
        allow_port = allow.port or _DEFAULT_PORTS.get(allow.scheme)
        if (allow.scheme, (allow.hostname or "").lower(), allow_port) != (
            target.scheme, target.hostname.lower(), port
        ):
            continue
        base = allow.path or "/"
        path = target.path or "/"
        if path == base or path.startswith(base if base.endswith("/") else base + "/"):
            return True
    return False
