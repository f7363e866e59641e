"""Who is calling, and what they may see.

Every router asks :func:`current_principal` for the caller and filters orders with
:meth:`Principal.may_see`, and patient identity with :meth:`Principal.sees_phi`, so the
rules live in one place. How the principal is established (OAuth2 client credentials,
API keys, the scan-station login) is decided here too and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fastapi import Request

from gateway.domain.model import TherapyOrder

Kind = Literal["hospital", "manufacturer", "courier", "erp", "user", "admin"]


@dataclass(frozen=True)
class Principal:
    id: str
    kind: Kind
    tenant: str | None = None  # site id, manufacturer id or courier id
    scopes: frozenset[str] = field(default_factory=frozenset)
    display_name: str = ""
    role: str | None = None  # for people: pharmacist, nurse, coordinator...

    def may_see(self, order: TherapyOrder) -> bool:
        if self.kind == "admin":
            return True
        if self.kind in ("hospital", "user", "erp"):
            return order.site.id == self.tenant
        if self.kind == "manufacturer":
            return order.therapy.manufacturer == self.tenant
        if self.kind == "courier":
            return any(shipment.courier == self.tenant for shipment in order.shipments)
        return False

    def sees_phi(self, order: TherapyOrder) -> bool:
        """Only the treating site's own systems and staff see name, DOB and MRN."""
        return self.kind in ("hospital", "user") and order.site.id == self.tenant

    def allows(self, resource: str, action: str) -> bool:
        """SMART-style scopes: ``system/Task.rs`` grants read+search on Task."""
        if self.kind == "admin" or "*" in self.scopes:
            return True
        for scope in self.scopes:
            _, _, rest = scope.partition("/")
            name, _, actions = rest.partition(".")
            if name in (resource, "*") and (action in actions or actions == "*"):
                return True
        return False


#: The principal used when the gateway runs in development mode (no credentials configured,
#: loopback only): it may do everything, and says so in every audit entry.
DEVELOPMENT = Principal(id="dev", kind="admin", display_name="development mode")


def current_principal(request: Request) -> Principal:
    """The authenticated caller. Development mode trusts the X-V2V-* headers so tests and the
    demo can act as any partner; production authentication replaces this."""
    role = request.headers.get("X-V2V-Role")
    actor = request.headers.get("X-V2V-Actor", "api")
    tenant = request.headers.get("X-V2V-Tenant")
    if role in ("hospital", "manufacturer", "courier", "erp", "user"):
        return Principal(id=actor, kind=role, tenant=tenant, scopes=frozenset({"*"}),  # type: ignore[arg-type]
                         display_name=actor)
    return Principal(id=actor, kind="admin", display_name=actor)
