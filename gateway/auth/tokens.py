"""Short-lived access tokens and the client assertions that buy them.

SMART Backend Services style: a client proves itself with a JWT it signs with its private
key (``private_key_jwt``) or with a client secret, and receives a bearer token valid for a
few minutes. The gateway's tokens are JWTs signed with its own key, so any gateway process
sharing the key can check them without a database round trip.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import jwt

from gateway.auth.config import AuthConfig, Client

ISSUER = "vein2vein"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]
MAX_ASSERTION_LIFETIME = 300


class AuthError(Exception):
    """A credential that does not authenticate; ``code`` follows RFC 6749 §5.2."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    kind: str
    tenant: str | None
    scopes: frozenset[str]
    role: str | None
    display_name: str
    expires_at: int


class ReplayGuard(Protocol):
    """Says whether a client assertion is used for the first time (and remembers it)."""

    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool: ...


class MemoryReplayGuard:
    """Remembers assertion ids in this process until they expire (tests, and a gateway
    without a database); ``gateway.store.assertions`` keeps them for every process."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool:
        now = time.time()
        with self._lock:
            for key in [k for k, exp in self._seen.items() if exp < now]:
                del self._seen[key]
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = expires_at
            return True


def granted_scopes(client: Client, requested: str | None) -> frozenset[str]:
    allowed = frozenset(client.scopes)
    if not requested:
        return allowed
    wanted = frozenset(requested.split())
    if not wanted <= allowed:
        raise AuthError(
            "invalid_scope",
            "requested scopes exceed the client's: " + " ".join(sorted(wanted - allowed)),
            status=400,
        )
    return wanted


def verify_client_assertion(
    config: AuthConfig, assertion: str, token_url: str, replay: ReplayGuard
) -> Client:
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError("invalid_client", f"client_assertion is not a JWT: {exc}") from exc
    client_id = unverified.get("iss")
    client = config.client(str(client_id)) if client_id else None
    if client is None or client.public_key_file is None:
        raise AuthError("invalid_client", "unknown client or no public key registered")
    key = client.public_key_file.read_text(encoding="utf-8")
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=ASSERTION_ALGORITHMS,
            audience=token_url,
            issuer=client.id,
            options={"require": ["exp", "jti", "sub", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError("invalid_client", f"client_assertion rejected: {exc}") from exc
    if claims["sub"] != client.id:
        raise AuthError("invalid_client", "client_assertion sub must equal iss")
    if claims["exp"] - time.time() > MAX_ASSERTION_LIFETIME:
        raise AuthError("invalid_client", "client_assertion lives longer than 5 minutes")
    if not replay.first_use(client.id, str(claims["jti"]), float(claims["exp"])):
        raise AuthError("invalid_client", "client_assertion was already used (jti replay)")
    return client


def verify_client_secret(config: AuthConfig, client_id: str, secret: str) -> Client:
    import hmac

    client = config.client(client_id)
    expected = client.secret() if client else None
    if (
        client is None
        or expected is None
        or not hmac.compare_digest(expected.encode(), secret.encode())
    ):
        raise AuthError("invalid_client", "unknown client or wrong client secret")
    return client


def issue_token(
    config: AuthConfig,
    *,
    subject: str,
    kind: str,
    tenant: str | None,
    scopes: frozenset[str],
    ttl: int,
    role: str | None = None,
    display_name: str = "",
    token_use: str = "access",
) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "kind": kind,
        "tenant": tenant,
        "scope": " ".join(sorted(scopes)),
        "role": role,
        "name": display_name or subject,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(12),
        "use": token_use,
    }
    return jwt.encode(claims, config.signing_key(), algorithm="HS256")


def verify_token(config: AuthConfig, token: str, token_use: str = "access") -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            config.signing_key(),
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("invalid_token", "the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
    if claims.get("use") != token_use:
        raise AuthError("invalid_token", f"not a {token_use} token")
    return TokenClaims(
        subject=claims["sub"],
        kind=claims["kind"],
        tenant=claims.get("tenant"),
        scopes=frozenset((claims.get("scope") or "").split()),
        role=claims.get("role"),
        display_name=claims.get("name") or claims["sub"],
        expires_at=int(claims["exp"]),
    )
