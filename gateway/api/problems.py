"""RFC 9457 problem details: every API error has this one shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.kept_commands import keep_refused
from gateway.domain.errors import DomainError, TransitionRefused
from gateway.service.errors import ServiceError

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://vein2vein.dev/problems/"


def problem(
    status: int, code: str, title: str, detail: str, instance: str | None = None, **extensions: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update({key: value for key, value in extensions.items() if value is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    response = problem(
        exc.status,
        exc.code,
        exc.code.replace("_", " ").capitalize(),
        exc.message,
        request.url.path,
        **exc.details,
    )
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="vein2vein"'
    return response


async def refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TransitionRefused)
    return problem(
        409, exc.code, "Transition refused", exc.message, request.url.path, **exc.details
    )


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem(422, exc.code, "Invalid request", exc.message, request.url.path, **exc.details)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "pointer": "/" + "/".join(str(part) for part in error["loc"][1:]),
            "location": str(error["loc"][0]) if error["loc"] else None,
            "detail": error["msg"],
        }
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"pointer": "", "detail": "invalid request"}
    return problem(
        422,
        "validation_error",
        "Invalid request",
        f"{first['pointer'] or 'body'}: {first['detail']}",
        request.url.path,
        errors=errors,
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        404: "not_found",
        405: "method_not_allowed",
        401: "unauthorized",
        403: "forbidden",
        415: "unsupported_media_type",
    }.get(exc.status_code, "http_error")
    return problem(
        exc.status_code,
        code,
        code.replace("_", " ").capitalize(),
        str(exc.detail),
        request.url.path,
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        500,
        "internal_error",
        "Internal error",
        "The gateway failed unexpectedly; nothing was changed. The error is logged.",
        request.url.path,
    )


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def _kept(handler: Handler) -> Handler:
    """The handler, and the refused command kept in the inbox (see kept_commands)."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = await handler(request, exc)
        await keep_refused(request, response)
        return response

    return handle


def install(app: Any) -> None:
    app.add_exception_handler(ServiceError, _kept(service_error))
    app.add_exception_handler(TransitionRefused, _kept(refused))
    app.add_exception_handler(DomainError, _kept(domain_error))
    app.add_exception_handler(RequestValidationError, _kept(validation_error))
    app.add_exception_handler(StarletteHTTPException, _kept(http_error))
    app.add_exception_handler(Exception, _kept(unexpected_error))
