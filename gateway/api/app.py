"""The FastAPI application: thin routers over the service layer."""

from __future__ import annotations

from fastapi import FastAPI

from adapters.couriers import router as courier_webhooks
from adapters.fhir import api as fhir_api
from adapters.manufacturers import router as manufacturer_webhooks
from gateway.api import admin, auth_routes, health, orders, problems, scans, station, tower
from gateway.auth.config import AuthConfig, load_auth_config
from gateway.service.labels import LabelFactory
from gateway.service.orders import OrderService
from gateway.service.scanning import ScanStation
from gateway.sites import SiteDirectory, load_sites


def create_app(
    service: OrderService,
    sites: SiteDirectory | None = None,
    auth: AuthConfig | bool | None = True,
) -> FastAPI:
    """``auth=True`` reads ``V2V_AUTH_FILE`` (unset: development mode); pass a config to
    enforce it, or ``None`` for development mode regardless of the environment."""
    app = FastAPI(
        title="vein2vein gateway",
        version="0.1.0",
        description="Canonical order API for patient-specific cell and gene therapies. "
        "Errors are RFC 9457 problem details.",
    )
    sites = sites or load_sites()
    app.state.orders = service
    app.state.auth = load_auth_config() if auth is True else (auth or None)
    app.state.sites = sites
    app.state.labels = LabelFactory.default(sites)
    app.state.scan_station = ScanStation(service, sites)
    problems.install(app)
    # /fhir first: every request is matched against the routes in order, and the partner
    # integrations' traffic is FHIR (no other router has a path under /fhir).
    fhir_api.install(app)  # /fhir router, and OperationOutcome errors on /fhir paths
    app.include_router(health.router)
    app.include_router(auth_routes.router)
    app.include_router(admin.router)
    app.include_router(orders.router)
    app.include_router(manufacturer_webhooks)
    app.include_router(courier_webhooks)
    app.include_router(scans.router)
    app.include_router(station.router)
    app.include_router(tower.router)
    app.mount("/static", station.static_files(), name="static")
    return app
