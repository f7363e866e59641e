"""``/auth``: the OAuth2 token endpoint and the staff login behind the scan station."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse

from gateway.api.auth import SESSION_COOKIE, Principal, auth_config, current_principal
from gateway.auth.passwords import verify_password
from gateway.auth.tokens import (
    ASSERTION_TYPE,
    AuthError,
    MemoryReplayGuard,
    ReplayGuard,
    granted_scopes,
    issue_token,
    verify_client_assertion,
    verify_client_secret,
)
from gateway.store.assertions import DatabaseReplayGuard

router = APIRouter(prefix="/auth", tags=["auth"])


def _oauth_error(error: AuthError) -> JSONResponse:
    """RFC 6749 §5.2 error body: token clients expect this shape, not problem+json."""
    headers = {"WWW-Authenticate": 'Basic realm="vein2vein"'} if error.status == 401 else {}
    return JSONResponse(
        {"error": error.code, "error_description": error.message},
        status_code=error.status,
        headers={**headers, "Cache-Control": "no-store"},
    )


def _replay(request: Request) -> ReplayGuard:
    guard: ReplayGuard | None = getattr(request.app.state, "replay_guard", None)
    if guard is None:
        service = getattr(request.app.state, "orders", None)
        # In the database, so that every worker process (and a restarted one) refuses it.
        guard = DatabaseReplayGuard(service.engine) if service else MemoryReplayGuard()
        request.app.state.replay_guard = guard
    return guard


@router.post("/token", summary="OAuth2 client credentials (private_key_jwt or client secret)")
def token(
    request: Request,
    grant_type: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    client_assertion_type: Annotated[str | None, Form()] = None,
    client_assertion: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    config = auth_config(request)
    if not grant_type:
        # RFC 6749 §5.2: a token client expects invalid_request here, not a validation problem.
        return _oauth_error(AuthError("invalid_request", "grant_type is required", status=400))
    if config is None:
        return _oauth_error(
            AuthError(
                "unsupported_grant_type",
                "authentication is not configured (development mode)",
                status=400,
            )
        )
    if grant_type != "client_credentials":
        return _oauth_error(
            AuthError("unsupported_grant_type", "only client_credentials is supported", status=400)
        )
    try:
        if client_assertion is not None:
            if client_assertion_type != ASSERTION_TYPE:
                raise AuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
            client = verify_client_assertion(
                config, client_assertion, config.token_url or str(request.url), _replay(request)
            )
        else:
            client_id, client_secret = _basic(request, client_id, client_secret)
            if not client_id or client_secret is None:
                raise AuthError(
                    "invalid_client",
                    "send client_assertion, or client_id and client_secret (form or HTTP Basic)",
                )
            client = verify_client_secret(config, client_id, client_secret)
        scopes = granted_scopes(client, scope)
    except AuthError as exc:
        return _oauth_error(exc)
    access = issue_token(
        config,
        subject=client.id,
        kind=client.kind,
        tenant=client.tenant,
        scopes=scopes,
        ttl=config.token_ttl_seconds,
    )
    return JSONResponse(
        {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": config.token_ttl_seconds,
            "scope": " ".join(sorted(scopes)),
        },
        headers={"Cache-Control": "no-store"},
    )


def _basic(
    request: Request, client_id: str | None, client_secret: str | None
) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return client_id, client_secret
        user, _, password = decoded.partition(":")
        return user, password
    return client_id, client_secret


@router.post("/login", summary="Staff sign-in for the scan station and control tower")
def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()] = "",
    role: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    config = auth_config(request)
    if config is None:
        # Development mode: the name is taken as given, so the custody log still says who.
        return JSONResponse({"username": username, "role": role, "mode": "development"})
    user = config.user(username)
    if user is None or not verify_password(password, user.password_hash):
        return JSONResponse(
            {
                "type": "https://vein2vein.dev/problems/unauthorized",
                "title": "Sign-in failed",
                "status": 401,
                "code": "unauthorized",
                "detail": "Unknown user name or wrong password.",
            },
            status_code=401,
            media_type="application/problem+json",
        )
    session = issue_token(
        config,
        subject=user.username,
        kind=user.kind,
        tenant=user.tenant,
        scopes=frozenset({"user/*.*"}),
        ttl=config.session_ttl_seconds,
        role=user.role,
        display_name=user.display_name or user.username,
        token_use="session",
    )
    response = JSONResponse(
        {"username": user.username, "role": user.role, "site": user.tenant, "mode": "authenticated"}
    )
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=config.session_ttl_seconds,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", summary="End the staff session")
def logout() -> JSONResponse:
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/me", summary="Who the gateway thinks you are")
def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    return {
        "id": principal.id,
        "kind": principal.kind,
        "tenant": principal.tenant,
        "role": principal.role,
        "scopes": sorted(principal.scopes),
    }
