"""Search parameters → order criteria, and results → ``searchset`` Bundles.

Unknown parameters are ignored, as FHIR servers do by default, and named in an outcome
entry so the client can see they had no effect; ``Prefer: handling=strict`` refuses them.
Paging is keyset-based (``_cursor``), so a ``next`` link stays correct while orders change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from adapters.fhir import status as fhir_status
from adapters.fhir import terminology as t
from adapters.fhir.mapping import FhirProfiles
from adapters.fhir.outcome import FhirError, Issue, operation_outcome
from adapters.fhir.reads import ORDER_ID, OrderCriteria
from gateway.numbers import ascii_integer

DEFAULT_COUNT = 20
MAX_COUNT = 200
#: Parameters every search accepts that are not criteria.
CONTROL = frozenset({"_count", "_cursor", "_offset", "_include", "_total", "_format"})

_DATE_VALUE = re.compile(
    r"^(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<time>\d{2}:\d{2}(:\d{2}(\.\d+)?)?)(?P<zone>Z|[+-]\d{2}:\d{2}))?)?)?$"
)


@dataclass
class Query:
    """The request's parameters, with what was used and what was ignored."""

    resource_type: str
    params: list[tuple[str, str]]
    strict: bool = False
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def values(self, name: str, *, same_as: tuple[str, ...] = ()) -> list[str]:
        """The values of ``name``, and of the modified forms ``same_as`` that mean the same
        here (``patient:Patient``: the only type a patient reference can have)."""
        found = []
        for key, value in self.params:
            if key == name or key in same_as:
                found.append(value)
                self.used.append((key, value))
        return found

    def one(self, name: str) -> str | None:
        found = self.values(name)
        if len(found) > 1:
            raise FhirError("invalid", f"Search parameter {name} may appear once.", name)
        return found[0] if found else None

    def finish(self, known: frozenset[str]) -> None:
        consumed = {name for name, _ in self.used}
        for key, _ in self.params:
            base, _, modifier = key.partition(":")
            if (base in known or base in CONTROL) and modifier and key not in consumed:
                # Ignoring it would answer a different question (status:not=completed
                # would list the completed orders): refused, as FHIR's own example does.
                raise FhirError(
                    "not-supported",
                    f"The {base} parameter has the modifier '{modifier}', which this server "
                    f"does not support for {self.resource_type}.",
                    key,
                )
            if base not in known and base not in CONTROL and key not in self.ignored:
                self.ignored.append(key)
        if self.ignored and self.strict:
            raise FhirError(
                "not-supported",
                f"Unknown search parameter(s) for {self.resource_type}: {', '.join(self.ignored)}.",
                self.ignored[0],
            )


def count(query: Query) -> int:
    value = query.one("_count")
    if value is None:
        return DEFAULT_COUNT
    number = ascii_integer(value)
    if number is None:
        raise FhirError("value", f"_count must be a non-negative integer, got {value!r}.", "_count")
    return min(number, MAX_COUNT)


def last_updated(value: str) -> list[tuple[str, datetime]]:
    """``[prefix]date``: the instant range the value stands for, as SQL comparisons."""
    prefix = value[:2] if value[:2].isalpha() else "eq"
    text = value[2:] if value[:2].isalpha() else value
    if prefix not in ("eq", "gt", "lt", "ge", "le"):
        raise FhirError(
            "not-supported",
            f"_lastUpdated prefix '{prefix}' is not supported; use eq, gt, lt, ge or le.",
            "_lastUpdated",
        )
    start, end = _date_range(text)
    return {
        "eq": [("ge", start), ("lt", end)],
        "gt": [("ge", end)],
        "lt": [("lt", start)],
        "ge": [("ge", start)],
        "le": [("lt", end)],
    }[prefix]


def _date_range(text: str) -> tuple[datetime, datetime]:
    match = _DATE_VALUE.match(text)
    if not match:
        raise FhirError(
            "value",
            f"_lastUpdated value {text!r} is not a FHIR date or dateTime with a time zone.",
            "_lastUpdated",
        )
    try:
        year = int(match["year"])
        if match["month"] is None:
            return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
        month = int(match["month"])
        if match["day"] is None:
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, end
        if match["time"] is None:
            start = datetime(year, month, int(match["day"]), tzinfo=UTC)
            return start, start + timedelta(days=1)
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
        time = match["time"]
        step = (
            timedelta(microseconds=1)
            if "." in time
            else timedelta(seconds=1)
            if time.count(":") == 2
            else timedelta(minutes=1)
        )
        # In UTC, as stored; a bound with no UTC (0001-01-01 at +01:00) is not a date here.
        return start.astimezone(UTC), (start + step).astimezone(UTC)
    except (ValueError, OverflowError):
        raise FhirError(
            "value", f"_lastUpdated value {text!r} is not a date.", "_lastUpdated"
        ) from None


def identifier_options(
    value: str, profiles: FhirProfiles
) -> tuple[list[tuple[str | None, str | None, str]], list[str]]:
    """A token ``[system|]value`` → (kind, namespace, value) options and order ids."""
    options: list[tuple[str | None, str | None, str]] = []
    ids: list[str] = []
    for token in value.split(","):
        if "|" not in token:
            options.append((None, None, token))
            continue
        system, _, ident = token.partition("|")
        if not system:
            options.append((None, None, ident))
        elif system == t.ORDER_SYSTEM:
            ids.append(ident)
        elif system == t.COI_SYSTEM:
            options.append(("coi", "", ident))
        elif system == t.UNIT_SYSTEM:
            options.append(("unit", "", ident))
        elif system.startswith(t.MANUFACTURER_ORDER_SYSTEM + "/"):
            options.append(("manufacturer_order", system.rsplit("/", 1)[1], ident))
        else:
            for profile in profiles.profiles.values():
                if profile.identifiers.placer_system == system:
                    options.append(("placer", profile.site, ident))
            # A system we do not know matches nothing, which is FHIR's answer too.
    return options, ids


def _references(value: str, resource_type: str, name: str) -> list[str]:
    found = []
    for token in value.split(","):
        kind, _, ident = token.rpartition("/")
        if kind and kind.rsplit("/", 1)[-1] != resource_type:
            raise FhirError(
                "invalid",
                f"Parameter {name} expects {resource_type} references, got {token!r}.",
                name,
            )
        found.append(ident)
    return found


def patient_params(resource_type: str, patient_param: str = "patient") -> tuple[str, ...]:
    """The search parameters that name an order's patient on ``resource_type``."""
    return (
        (patient_param, "subject", "for") if resource_type == "Task" else (patient_param, "subject")
    )


def order_criteria(
    query: Query,
    profiles: FhirProfiles,
    status_condition: Callable[[str], fhir_status.StatusCondition],
    allowed_statuses: frozenset[str],
    patient_param: str,
) -> OrderCriteria:
    """Task and ServiceRequest search the same thing, the orders; only status differs."""
    ids: list[str] | None = None
    if (value := query.one("_id")) is not None:
        ids = value.split(",")
    status_held = None
    if (value := query.one("status")) is not None:
        status_held = []
        for code in value.split(","):
            if code not in allowed_statuses:
                raise FhirError(
                    "code-invalid",
                    f"status '{code}' is not a {query.resource_type}.status code.",
                    "status",
                )
            status_held.append(status_condition(code))
    identifiers = []
    for value in query.values("identifier"):
        options, order_ids = identifier_options(value, profiles)
        if order_ids and not options:
            ids = [order_id for order_id in order_ids if ids is None or order_id in ids]
            continue
        # A comma is OR, also across systems: the order ids join the other alternatives.
        identifiers.append(options + [(ORDER_ID, None, order_id) for order_id in order_ids])
    # R4 names the patient of a ServiceRequest or Task by `patient` and `subject` (and
    # Task.for by `for`); each given one must hold, as FHIR ANDs repeated parameters.
    patients = [
        _references(value, "Patient", name)
        for name in patient_params(query.resource_type, patient_param)
        for value in query.values(name, same_as=(f"{name}:Patient",))
    ]
    updated = [bound for value in query.values("_lastUpdated") for bound in last_updated(value)]
    return OrderCriteria(
        ids=ids,
        status_held=status_held,
        identifiers=identifiers or None,
        patient_ids=patients or None,
        updated=updated or None,
    )


def page_link(base: str, query: Query, **extra: str) -> str:
    params = [(key, value) for key, value in query.used if key not in ("_cursor", "_offset")]
    params += list(extra.items())
    suffix = f"?{urlencode(params)}" if params else ""
    return f"{base}/{query.resource_type}{suffix}"


def searchset(
    base: str,
    query: Query,
    matches: list[dict[str, Any]],
    *,
    includes: list[dict[str, Any]] | None = None,
    next_link: str | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    links = [{"relation": "self", "url": page_link(base, query)}]
    if next_link:
        links.append({"relation": "next", "url": next_link})
    entries = [_entry(base, resource, "match") for resource in matches]
    entries += [_entry(base, resource, "include") for resource in includes or []]
    if query.ignored:
        outcome = operation_outcome(
            [
                Issue(
                    "not-supported",
                    f"Search parameter {name} is not supported here and was ignored.",
                    name,
                    severity="warning",
                )
                for name in query.ignored
            ]
        )
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if total is not None:
        bundle["total"] = total
    bundle["entry"] = entries
    return bundle


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }
