"""OperationOutcome: the one shape every FHIR error takes.

The HTTP status is derived from the first issue's code (:func:`status_for`). A stored
inbound reply keeps only the body, so a retried message must be able to recover the
status its first answer had from that body alone: where the status is not the code's own
(412 for a stale If-Match is a "conflict"), the issue carries it in an extension.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FHIR_JSON = "application/fhir+json"
HTTP_STATUS_EXTENSION = "https://vein2vein.dev/fhir/StructureDefinition/http-status"

#: issue-type → HTTP status. Anything not listed is a client error (400).
_STATUS_BY_CODE: dict[str, int] = {
    "business-rule": 422,
    "processing": 422,
    "conflict": 409,
    "duplicate": 409,
    "not-found": 404,
    "deleted": 410,
    "forbidden": 403,
    "security": 403,
    "login": 401,
    "too-costly": 400,
    "exception": 500,
    "transient": 503,
    "timeout": 504,
}

#: Codes this module may emit; a typo must fail fast, not produce an invalid resource.
_ISSUE_TYPES = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "code-invalid",
        "not-supported",
        "duplicate",
        "not-found",
        "conflict",
        "business-rule",
        "processing",
        "forbidden",
        "security",
        "login",
        "exception",
        "transient",
        "timeout",
        "too-costly",
        "deleted",
        "informational",
    }
)


@dataclass(frozen=True)
class Issue:
    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"
    status: int | None = None  # the HTTP status, where it is not the code's own

    def __post_init__(self) -> None:
        if self.code not in _ISSUE_TYPES:
            raise ValueError(f"unknown OperationOutcome issue type {self.code!r}")

    def as_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            # FHIR R4 names an HTTP header or parameter at fault in ``location`` as
            # "http." + its name; ``expression`` is FHIRPath into a resource.
            where = "location" if self.expression.startswith("http.") else "expression"
            issue[where] = [self.expression]
        if self.status is not None and self.status != status_for(self.code):
            issue["extension"] = [{"url": HTTP_STATUS_EXTENSION, "valueInteger": self.status}]
        return issue


class FhirError(ValueError):
    """A request the FHIR endpoint refuses, with the element at fault. A ValueError, so
    the inbox records it as a rejection rather than logging a crash."""

    def __init__(
        self,
        code: str,
        diagnostics: str,
        expression: str | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.issues = [Issue(code, diagnostics, expression, status=status)]
        self._status = status

    @property
    def status(self) -> int:
        """The issue code's status, unless one was given (412)."""
        return self._status or status_for(self.issues[0].code)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def status_for(code: str) -> int:
    return _STATUS_BY_CODE.get(code, 400)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.as_fhir() for issue in issues]}


def status_of_stored(body: bytes) -> int:
    """The HTTP status a stored reply was first sent with (see the module docstring)."""
    try:
        resource = json.loads(body)
    except ValueError:
        return 500
    if resource.get("resourceType") != "OperationOutcome":
        return 200
    issues = resource.get("issue") or [{}]
    for extension in issues[0].get("extension") or []:
        if extension.get("url") == HTTP_STATUS_EXTENSION:
            return int(extension["valueInteger"])
    return status_for(str(issues[0].get("code", "exception")))
