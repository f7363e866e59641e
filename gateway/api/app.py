"""The FastAPI application: thin routers over the service layer."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.api import health, orders, problems
from gateway.service.orders import OrderService


def create_app(service: OrderService) -> FastAPI:
    app = FastAPI(
        title="vein2vein gateway",
        version="0.1.0",
        description="Canonical order API for patient-specific cell and gene therapies. "
        "Errors are RFC 9457 problem details.",
    )
    app.state.orders = service
    problems.install(app)
    app.include_router(health.router)
    app.include_router(orders.router)
    return app
