"""Request bodies read with a ceiling, and the one Content-Type a request declares.

A body is refused with 413 before it is read whole: at once when its Content-Length is over
the limit, else as soon as the bytes streamed in pass it. An oversize body is not stored
anywhere (keeping it would be the attack), so the refusal is answered directly and never
reaches the handlers that keep refused commands.

:func:`read_body` is the one implementation; ``adapters/fhir/api.py`` calls it too and maps
:class:`BodyTooLarge` to its OperationOutcome.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from gateway.api.problems import problem
from gateway.numbers import ascii_integer
from gateway.service.errors import ServiceError

MIB = 1024 * 1024


def byte_setting(name: str, default: int) -> int:
    """A size in bytes from the environment variable ``name``, else ``default``; a value
    that is not a whole number above 0 stops the gateway at start-up, naming the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = ascii_integer(text)
    if value is None or value == 0:
        raise RuntimeError(f"{name}={text!r} must be a whole number of bytes above 0")
    return value


#: A partner webhook (manufacturers, couriers): an event or a logger file is kilobytes.
WEBHOOK_MAX_BYTES = byte_setting("V2V_WEBHOOK_MAX_BYTES", MIB)
#: A command to the REST API (``/orders``, ``/scans``): an order is a few kilobytes.
API_MAX_BYTES = byte_setting("V2V_API_MAX_BYTES", MIB)
#: A label photo on ``/scans/image``, as it has always been.
IMAGE_MAX_BYTES = 20 * MIB
#: The form fields and multipart framing around the photo.
IMAGE_FORM_ALLOWANCE = 64 * 1024


def size_text(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


class BodyTooLarge(Exception):
    """A body over ``limit`` bytes; ``what`` names the message, for the problem's detail."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.detail = (
            f"The body is larger than {size_text(limit)} ({limit} bytes), the most {what} "
            "may be; it was not read or stored."
        )
        super().__init__(self.detail)


class ContentTooLarge(ServiceError):
    """A part of a body read whole (a form's file) over its own limit."""

    code = "body_too_large"
    status = 413


async def read_body(request: Request, limit: int, what: str = "a request") -> bytes:
    """The whole body, or :class:`BodyTooLarge` once it passes ``limit`` bytes: by its
    Content-Length (nothing is read), or while it streams in when it has none or
    understates it. The body read is kept on the request, so a later ``request.body()``
    (FastAPI's own parsing, a handler) returns it without reading again."""
    declared = ascii_integer(request.headers.get("content-length", "").strip())
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, what)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body
    return body


def too_large_response(request: Request, error: BodyTooLarge) -> JSONResponse:
    """The 413 problem for ``error``; answered directly, so the body is not kept."""
    return problem(
        413,
        "body_too_large",
        "Content too large",
        error.detail,
        request.url.path,
        max_bytes=error.limit,
    )


class MultipleContentTypes(ServiceError):
    code = "multiple_content_types"
    status = 415


def content_types(request: Request) -> list[str]:
    """Every Content-Type header the request carries, in order."""
    return request.headers.getlist("content-type")


def one_content_type(request: Request) -> str | None:
    """The request's Content-Type (None when it has none). Two or more are refused with
    415: the first and the last may say different things, and whatever read the header
    one way would parse what another part checked the other way."""
    declared = content_types(request)
    if len(declared) > 1:
        raise MultipleContentTypes(multiple_content_types_detail(declared))
    return declared[0] if declared else None


def multiple_content_types_detail(declared: list[str]) -> str:
    return (
        f"The request has {len(declared)} Content-Type headers ({', '.join(declared)}); "
        "send exactly one."
    )


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def bounded_route(limit: int, what: str) -> type[APIRoute]:
    """A route class that reads every request body with :func:`read_body` before FastAPI
    parses it (JSON or a form), so no route of the router holds more than ``limit`` bytes;
    an oversize body gets the 413 problem and reaches no handler."""

    class BoundedRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def bounded(request: Request) -> Response:
                try:
                    await read_body(request, limit, what)
                except BodyTooLarge as error:
                    return too_large_response(request, error)
                return await handler(request)

            return bounded

    BoundedRoute.__name__ = f"BoundedRoute{limit}"
    return BoundedRoute
