"""Request-scoped access to the application's services."""

from __future__ import annotations

from fastapi import Request

from gateway.service.orders import OrderService


def order_service(request: Request) -> OrderService:
    service: OrderService = request.app.state.orders
    return service


def caller(request: Request) -> str:
    """The authenticated caller's id, for audit entries."""
    from gateway.api.auth import current_principal

    return current_principal(request).id
