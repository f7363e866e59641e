"""Who is calling, and what they may see.

Every router asks :func:`current_principal` for the caller and filters orders with
:meth:`Principal.may_see`, and patient identity with :meth:`Principal.sees_phi`, so the
rules live in one place.

With ``V2V_AUTH_FILE`` set, callers authenticate with a bearer token from ``/auth/token``
(OAuth2 client credentials: ``private_key_jwt`` or client secret), an API key for partners
that can do nothing else, or a staff session from ``/auth/login``. Without it the gateway
is in development mode: it listens on loopback only and trusts the ``X-V2V-*`` headers, so
tests and the demo can act as any partner.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import cast

from fastapi import Request

from gateway.auth.config import AuthConfig, Kind
from gateway.auth.tokens import AuthError, verify_token
from gateway.domain.model import Source, TherapyOrder
from gateway.domain.states import EventType
from gateway.service.errors import ServiceError

SESSION_COOKIE = "v2v_session"


class Unauthorized(ServiceError):
    code = "unauthorized"
    status = 401


class Forbidden(ServiceError):
    code = "forbidden"
    status = 403


Owner = tuple[str, str, frozenset[str]]


def owner_of(order: TherapyOrder) -> Owner:
    """Who an order belongs to: its site, its manufacturer and the couriers carrying it."""
    couriers = frozenset(s.courier for s in order.shipments if s.courier)
    return order.site.id, order.therapy.manufacturer, couriers


#: SMART v1's words; v2's letters are read by _letters.
_SCOPE_ACTIONS = {"*": "cruds", "read": "rs", "write": "cud"}


def _letters(actions: str) -> str:
    """SMART v2 permissions (``rs``, ``cruds``): only those letters, in that order, mean
    anything; another word grants nothing rather than whatever letters it happens to hold."""
    return actions if actions and all(c in "cruds" for c in actions) else ""


@dataclass(frozen=True)
class Principal:
    id: str
    kind: Kind
    tenant: str | None = None  # site id, manufacturer id or courier id
    scopes: frozenset[str] = field(default_factory=frozenset)
    display_name: str = ""
    role: str | None = None  # for people: pharmacist, nurse, coordinator...

    def may_see(self, order: TherapyOrder) -> bool:
        return self.may_see_owner(owner_of(order))

    def may_see_owner(self, owner: Owner) -> bool:
        """``owner`` is (site, manufacturer, couriers): enough to decide without the order."""
        site, manufacturer, couriers = owner
        if self.kind == "admin":
            return True
        if self.kind in ("hospital", "user", "erp"):
            return site == self.tenant
        if self.kind == "manufacturer":
            return manufacturer == self.tenant
        if self.kind == "courier":
            return self.tenant in couriers
        return False

    def sees_phi(self, order: TherapyOrder) -> bool:
        """Only the treating site's own systems and staff (and the site's gateway operators)
        see name, DOB and MRN."""
        if self.kind == "admin":
            return True
        return self.kind in ("hospital", "user") and order.site.id == self.tenant

    def allows(self, resource: str, action: str) -> bool:
        """SMART-style scopes: ``system/Task.rs`` grants read+search on Task."""
        if self.kind == "admin" or "*" in self.scopes:
            return True
        for scope in self.scopes:
            _, _, rest = scope.partition("/")
            name, _, actions = rest.partition(".")
            if name in (resource, "*") and action in _SCOPE_ACTIONS.get(actions, _letters(actions)):
                return True
        return False

    def search_filter(self) -> dict[str, str]:
        """Search criteria that keep a listing inside the caller's own orders."""
        if self.kind == "admin":
            return {}
        if self.kind == "manufacturer":
            return {"manufacturer": self.tenant or "-"}
        if self.kind == "courier":
            return {"courier": self.tenant or "-"}
        return {"site_id": self.tenant or "-"}


#: Which lifecycle events each kind of caller may report, and as which source. A courier
#: cannot release a product and a manufacturer cannot infuse one.
EVENTS_BY_KIND: dict[str, frozenset[EventType]] = {
    "manufacturer": frozenset(
        {
            EventType.ENROLL,
            EventType.CONFIRM_SLOT,
            EventType.RESCHEDULE,
            EventType.RECEIVE_AT_MFG,
            EventType.START_MANUFACTURING,
            EventType.RELEASE,
            EventType.RELEASE_OOS,
            EventType.FAIL_MANUFACTURING,
            EventType.SHIP_TO_SITE,
            EventType.CANCEL,
            EventType.PLACE_HOLD,
        }
    ),
    "courier": frozenset(
        {
            EventType.SHIP_TO_MFG,
            EventType.SHIP_TO_SITE,
            EventType.RECEIVE_AT_MFG,
            EventType.RECEIVE_AT_SITE,
            EventType.PLACE_HOLD,
        }
    ),
    "erp": frozenset(),
}
SOURCE_BY_KIND: dict[str, Source] = {
    "hospital": Source.HOSPITAL,
    "user": Source.PHARMACY,
    "manufacturer": Source.MANUFACTURER,
    "courier": Source.COURIER,
    "erp": Source.ERP,
}


def need(actor: Principal, action: str) -> None:
    """Scopes follow SMART's style: ``system/Order.rs`` reads and searches orders,
    ``system/Order.c`` creates them, ``system/Order.u`` reports events."""
    if not actor.allows("Order", action):
        raise Forbidden(
            f"Your credential has no scope for Order.{action}.",
            required_scope=f"system/Order.{action}",
        )


def may_report(principal: Principal, event: EventType) -> bool:
    allowed = EVENTS_BY_KIND.get(principal.kind)
    return allowed is None or event in allowed


def _development_principal(request: Request) -> Principal:
    role = request.headers.get("X-V2V-Role")
    actor = request.headers.get("X-V2V-Actor", "api")
    tenant = request.headers.get("X-V2V-Tenant")
    if role in ("hospital", "manufacturer", "courier", "erp", "user"):
        return Principal(
            id=actor,
            kind=cast(Kind, role),
            tenant=tenant,
            scopes=frozenset({"*"}),
            display_name=actor,
        )
    return Principal(id=actor, kind="admin", display_name=actor)


def auth_config(request: Request) -> AuthConfig | None:
    config: AuthConfig | None = getattr(request.app.state, "auth", None)
    return config


def current_principal(request: Request) -> Principal:
    """The authenticated caller, or 401 with a reason."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    config = auth_config(request)
    principal = (
        _development_principal(request) if config is None else _authenticate(request, config)
    )
    request.state.principal = principal
    return principal


def _authenticate(request: Request, config: AuthConfig) -> Principal:
    header = request.headers.get("Authorization", "")
    try:
        if header.lower().startswith("bearer "):
            return _still_known(config, _from_claims(verify_token(config, header[7:].strip())))
        api_key = request.headers.get("X-API-Key")
        if api_key:
            return _from_api_key(config, api_key)
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            claims = verify_token(config, session, token_use="session")
            return _still_known(config, _from_claims(claims))
    except AuthError as exc:
        raise Unauthorized(exc.message, error=exc.code) from exc
    raise Unauthorized(
        "Authenticate with a bearer token from /auth/token, an API key or a staff login."
    )


def _still_known(config: AuthConfig, principal: Principal) -> Principal:
    """A token outlives nothing it was issued to: a client or user removed from the
    configuration is refused at once, not when its token or session expires."""
    # A person signed in may be of kind user or admin; a system is a client.
    known = config.user(principal.id) or config.client(principal.id)
    if known is None:
        raise AuthError("invalid_token", f"{principal.id} is no longer a known credential")
    return principal


def _from_claims(claims: object) -> Principal:
    from gateway.auth.tokens import TokenClaims

    assert isinstance(claims, TokenClaims)
    return Principal(
        id=claims.subject,
        kind=claims.kind,  # type: ignore[arg-type]
        tenant=claims.tenant,
        scopes=claims.scopes,
        display_name=claims.display_name,
        role=claims.role,
    )


def _from_api_key(config: AuthConfig, presented: str) -> Principal:
    match = None
    for client in config.clients:
        key = client.api_key()
        # Compare against every key so timing does not reveal which clients exist.
        if key is not None and hmac.compare_digest(key.encode(), presented.encode()):
            match = client
    if match is None:
        raise AuthError("invalid_client", "unknown API key")
    return Principal(
        id=match.id,
        kind=match.kind,
        tenant=match.tenant,
        scopes=frozenset(match.scopes),
        display_name=match.id,
    )
