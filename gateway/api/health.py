"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.store.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and the schema is current")
def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.orders.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = current_revision(engine)
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "reason": f"database: {exc}"[:300]}, status_code=503
        )
    if revision != head_revision():
        return JSONResponse(
            {
                "status": "unavailable",
                "reason": f"schema at {revision}, expected {head_revision()}",
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready", "schema": revision})
