"""Request-scoped access to the application's services."""

from __future__ import annotations

from fastapi import Request

from gateway.service.orders import OrderService


def order_service(request: Request) -> OrderService:
    service: OrderService = request.app.state.orders
    return service
