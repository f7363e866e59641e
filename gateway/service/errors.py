"""Errors the service layer raises for entrypoints to translate into their protocol."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    code = "service_error"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ServiceError):
    code = "not_found"
    status = 404


class UnknownTherapy(ServiceError):
    code = "unknown_therapy"
    status = 422


class VersionMismatch(ServiceError):
    code = "version_mismatch"
    status = 412


class Conflict(ServiceError):
    code = "conflict"
    status = 409
