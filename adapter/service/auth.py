"""Who is calling: API keys and JWT bearer tokens checked against configured keys.

Keys are compared by SHA-256 digest in constant time, so the configured secret never sits in
memory in clear and a timing probe learns nothing. Tokens are verified with PyJWT against the
configured HS256 secret and/or RS256/ES256 public keys; ``alg`` is never taken from the token
alone (no ``none``, no HS/RS confusion).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from adapter.service.config import DEFAULT_SCOPES, AuthConfig, hash_key


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as recorded in the audit trail."""

    id: str  # "key:<id>" or "jwt:<sub>"
    scopes: frozenset[str]


ANONYMOUS_LOCAL = Principal(id="local", scopes=frozenset({"validate", "submit", "read"}))


class AuthError(Exception):
    """Credentials were sent but are not valid (401)."""


def _from_api_key(config: AuthConfig, key: str) -> Principal:
    digest = hash_key(key)
    found = None
    for entry in config.api_keys:  # no early exit: the time does not depend on which key matched
        if hmac.compare_digest(entry.sha256, digest):
            found = entry
    if found is None:
        raise AuthError("unknown api key")
    return Principal(id=f"key:{found.id}", scopes=found.scopes)


def _token_scopes(claims: dict[str, object]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp"))
    if raw is None:
        return DEFAULT_SCOPES
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(s) for s in raw)
    return frozenset()


@lru_cache(maxsize=32)
def load_public_key(pem: str) -> tuple[object, list[str]]:
    """Load a PEM public key once and say which algorithm it verifies."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except ValueError:
        raise AuthError("configured public key is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, ["ES256"]
    raise AuthError("configured public key is neither RSA nor EC")


def _from_jwt(config: AuthConfig, token: str) -> Principal:
    import jwt  # PyJWT; imported here so loopback-only installs never need it

    jc = config.jwt
    candidates: list[tuple[object, list[str]]] = []
    if jc.hs256_secret:
        candidates.append((jc.hs256_secret, ["HS256"]))
    for pem in jc.public_keys:
        candidates.append(load_public_key(pem))
    if not candidates:
        raise AuthError("bearer tokens are not accepted here")
    try:
        header_alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise AuthError("malformed token") from None
    options = {"require": ["exp", "sub"]}
    for key, algorithms in candidates:
        if header_alg not in algorithms:
            continue
        try:
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=jc.audience, issuer=jc.issuer,
                leeway=jc.leeway, options=options,  # type: ignore[arg-type]
            )
        except jwt.InvalidSignatureError:
            continue  # maybe another configured key signed it
        except (jwt.PyJWTError, ValueError):
            raise AuthError("invalid token") from None
        return Principal(id=f"jwt:{claims['sub']}", scopes=_token_scopes(claims))
    raise AuthError("token not signed by a configured key")


def authenticate(config: AuthConfig, api_key: str | None, authorization: str | None) -> Principal | None:
    """The caller, or None when no credentials were sent. Raises AuthError on bad credentials."""
    if api_key:
        return _from_api_key(config, api_key.strip())
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return _from_jwt(config, value.strip())
        if scheme.lower() == "apikey" and value.strip():
            return _from_api_key(config, value.strip())
        raise AuthError("unsupported authorization scheme")
    return None
