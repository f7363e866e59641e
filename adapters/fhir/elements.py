"""Reading FHIR JSON element by element, each read knowing its FHIRPath-style location.

Inbound bundles are read with these instead of fhir.resources models: the mapping needs a
dozen elements, each checked for type and code, and every failure must name its element
(``Bundle.entry[2].resource.status``) in the OperationOutcome.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from adapters.fhir.outcome import FhirError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class Element:
    """A JSON object inside a resource, with the path that leads to it."""

    __slots__ = ("data", "path")

    def __init__(self, data: dict[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    def at(self, name: str) -> str:
        return f"{self.path}.{name}"

    def has(self, name: str) -> bool:
        return self.data.get(name) not in (None, [], {}, "")

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise FhirError("required", f"{self.at(name)} is required.", self.at(name))
            return None
        if not isinstance(value, str) or not value.strip():
            raise FhirError("value", f"{self.at(name)} must be a non-empty string.", self.at(name))
        return value

    def code(self, name: str, allowed: frozenset[str], *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is not None and value not in allowed:
            raise FhirError(
                "code-invalid",
                f"{self.at(name)} '{value}' is not a valid code; expected one of "
                f"{', '.join(sorted(allowed))}.",
                self.at(name),
            )
        return value

    def date(self, name: str) -> date | None:
        value = self.string(name)
        if value is None:
            return None
        if not _DATE.match(value):
            raise FhirError(
                "value", f"{self.at(name)} must be a full date (YYYY-MM-DD).", self.at(name)
            )
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise FhirError(
                "value", f"{self.at(name)} is not a calendar date.", self.at(name)
            ) from None

    def datetime(self, name: str) -> datetime | None:
        """A dateTime with a time zone; a bare date means midnight UTC."""
        value = self.string(name)
        if value is None:
            return None
        if _DATE.match(value):
            day = self.date(name)
            assert day is not None
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        if not _DATETIME.match(value):
            raise FhirError(
                "value",
                f"{self.at(name)} must be a dateTime with a time zone, e.g. 2026-11-02T09:00:00Z.",
                self.at(name),
            )
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            # Everything downstream works in UTC: a moment that has no UTC (year 9999 at
            # -05:00) is refused here rather than failing every later read of the order.
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise FhirError(
                "value", f"{self.at(name)} is not a valid dateTime.", self.at(name)
            ) from None

    def child(self, name: str, *, required: bool = False) -> Element | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise FhirError("required", f"{self.at(name)} is required.", self.at(name))
            return None
        if not isinstance(value, dict):
            raise FhirError("structure", f"{self.at(name)} must be a JSON object.", self.at(name))
        return Element(value, self.at(name))

    def children(self, name: str, *, required: bool = False) -> list[Element]:
        value = self.data.get(name)
        if value is None or value == []:
            if required:
                raise FhirError("required", f"{self.at(name)} is required.", self.at(name))
            return []
        if not isinstance(value, list):
            raise FhirError("structure", f"{self.at(name)} must be a JSON array.", self.at(name))
        items = []
        for index, item in enumerate(value):
            where = f"{self.at(name)}[{index}]"
            if not isinstance(item, dict):
                raise FhirError("structure", f"{where} must be a JSON object.", where)
            items.append(Element(item, where))
        return items

    def codings(self, name: str) -> Iterator[tuple[str | None, str | None, str]]:
        """(system, code, path) of every coding of a CodeableConcept element."""
        concept = self.child(name)
        if concept is None:
            return
        for coding in concept.children("coding"):
            yield coding.string("system"), coding.string("code"), coding.path


def resource_id(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise FhirError("value", f"{path} is not a valid FHIR id.", path)
    return value


def first_string(values: Any) -> str | None:
    """The first string of a repeating string element (HumanName.given), if any."""
    if isinstance(values, list):
        return next((value for value in values if isinstance(value, str) and value), None)
    return None
