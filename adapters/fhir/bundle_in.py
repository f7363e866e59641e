"""Inbound order bundles: a ``transaction`` or ``batch`` Bundle → canonical commands.

Each ServiceRequest (or MedicationRequest standing alone) is one therapy order. The
Patient, Practitioner, Organization/Location it references become the order's patient,
clinician and treatment site; Observation (weight, diagnosis) and Specimen (apheresis)
entries are checked and kept with the stored raw bundle, because the canonical order has
no place for them yet.

A transaction runs every order in the caller's unit of work and fails as a whole. A batch
runs each entry in its own savepoint and answers per entry. References must resolve inside
the bundle (``fullUrl``, ``Type/id`` of an entry, or ``#id`` of a contained resource); a
batch may reference its own entries, which FHIR leaves to the server.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from sqlalchemy import Connection

from adapters.fhir import element_names
from adapters.fhir import terminology as t
from adapters.fhir.elements import Element, first_string, resource_id
from adapters.fhir.mapping import FhirConfig, FhirProfile
from adapters.fhir.outcome import FhirError, Issue, operation_outcome
from adapters.fhir.reads import patient_id_by_mrn, patient_id_of
from adapters.fhir.resources import instant
from gateway.domain.errors import DomainError, TransitionRefused
from gateway.domain.model import Clinician, Site, TherapyOrder
from gateway.domain.patient import PatientIdentity
from gateway.service.commands import CreateOrder
from gateway.service.errors import Conflict, ServiceError
from gateway.service.orders import OrderService
from gateway.service.unit_of_work import UnitOfWork
from gateway.store import audit, driver_sql
from gateway.store.tables import orders

log = logging.getLogger(__name__)

ORDER_TYPES = frozenset({"ServiceRequest", "MedicationRequest"})
SUPPORTING_TYPES = frozenset(
    {
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "Observation",
        "Specimen",
    }
)
SITE_TYPES = frozenset({"Organization", "Location"})


# --- the bundle's shape -------------------------------------------------------------------


@dataclass
class Entry:
    index: int
    resource: Element
    resource_type: str
    full_url: str | None
    method: str
    url: str
    if_none_exist: str | None
    #: Where the condition was sent, for the OperationOutcome: the entry's request, or
    #: ``http.If-None-Exist`` for the header of a one-resource POST.
    condition_at: str = ""

    @property
    def path(self) -> str:
        return self.resource.path


@dataclass
class ParsedBundle:
    type: str
    id: str | None
    entries: list[Entry]
    by_reference: dict[str, int] = field(default_factory=dict)
    #: ``Prefer: handling=lenient``: an R4 element the gateway does not read is answered
    #: with a warning on its entry instead of refusing the bundle.
    lenient: bool = False
    #: Whether a refusal may offer lenient handling: not when the answer is the order
    #: itself (``POST /fhir/ServiceRequest``), which has no place for a warning.
    may_be_lenient: bool = True
    #: The warnings of lenient handling, by entry index, for the entries' answers.
    warnings: dict[int, list[Issue]] = field(default_factory=dict)


def load_json(body: bytes, root: str = "Bundle") -> dict[str, Any]:
    """The body as a JSON object; ``root`` is the resource type the endpoint expects."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError("structure", f"The body is not valid JSON: {exc}", root) from None
    except RecursionError:
        raise FhirError("structure", "The body nests JSON too deeply to read.", root) from None
    if not isinstance(data, dict):
        raise FhirError("structure", "The body must be a JSON object (a FHIR resource).")
    return data


def parse_bundle(data: dict[str, Any], root: str = "Bundle") -> ParsedBundle:
    """Check the bundle's envelope: type, entries, requests. Resources are read later."""
    kind = data.get("resourceType")
    if kind != "Bundle":
        raise FhirError(
            "invalid",
            f"Expected resourceType 'Bundle' (a transaction or batch), got {kind!r}.",
            "resourceType" if root == "Bundle" else root,
        )
    bundle = Element(data, root)
    bundle_type = bundle.code("type", t.BUNDLE_TYPES, required=True)
    if bundle_type not in ("transaction", "batch"):
        raise FhirError(
            "not-supported",
            f"Bundle.type '{bundle_type}' is not accepted here; send a transaction or batch.",
            bundle.at("type"),
        )
    bundle_id = resource_id(data.get("id"), bundle.at("id"))
    parsed = ParsedBundle(bundle_type or "", bundle_id, [])
    for index, item in enumerate(bundle.children("entry", required=True)):
        parsed.entries.append(_entry(index, item))
    for entry in parsed.entries:
        for key in _reference_keys(entry):
            if key in parsed.by_reference:
                raise FhirError(
                    "invalid",
                    f"{entry.path} has the same identity ({key}) as entry "
                    f"{parsed.by_reference[key]}; fullUrl and Type/id must be unique.",
                    f"Bundle.entry[{entry.index}].fullUrl",
                )
            parsed.by_reference[key] = entry.index
    return parsed


def _entry(index: int, item: Element) -> Entry:
    resource = item.child("resource", required=True)
    assert resource is not None
    resource_type = resource.string("resourceType", required=True) or ""
    if resource_type not in ORDER_TYPES | SUPPORTING_TYPES:
        raise FhirError(
            "not-supported",
            f"{resource.at('resourceType')} '{resource_type}' is not part of a therapy order; "
            f"accepted: {', '.join(sorted(ORDER_TYPES | SUPPORTING_TYPES))}.",
            resource.at("resourceType"),
        )
    resource_id(resource.data.get("id"), resource.at("id"))
    request = item.child("request", required=True)
    assert request is not None
    method = request.code("method", t.HTTP_VERBS, required=True) or ""
    if method != "POST":
        raise FhirError(
            "not-supported",
            f"{request.at('method')} '{method}' is not supported; orders are created with POST.",
            request.at("method"),
        )
    url = request.string("url", required=True) or ""
    if url.split("?", 1)[0].rstrip("/") != resource_type:
        raise FhirError(
            "invalid",
            f"{request.at('url')} '{url}' must name the resource type, '{resource_type}'.",
            request.at("url"),
        )
    full_url = item.string("fullUrl")
    return Entry(
        index,
        resource,
        resource_type,
        full_url,
        method,
        url,
        request.string("ifNoneExist"),
        request.at("ifNoneExist"),
    )


def _reference_keys(entry: Entry) -> list[str]:
    keys = []
    if entry.full_url:
        keys.append(entry.full_url)
    own_id = entry.resource.data.get("id")
    if own_id:
        keys.append(f"{entry.resource_type}/{own_id}")
    return keys


# --- references ---------------------------------------------------------------------------
def _service_base(full_url: str | None) -> str | None:
    """``http://x/fhir`` of a fullUrl ``http://x/fhir/Type/id``; None for ``urn:`` ids."""
    if not full_url or "://" not in full_url:
        return None
    parts = full_url.split("/_history/", 1)[0].rstrip("/").rsplit("/", 2)
    return parts[0] if len(parts) == 3 else None


@dataclass(frozen=True)
class Resolved:
    element: Element
    resource_type: str
    container: Entry


def _references(value: Any, path: str) -> list[tuple[str, str]]:
    """Every ``Reference.reference`` inside a resource, with its path."""
    found: list[tuple[str, str]] = []
    _collect_references(value, path, found)
    return found


def _collect_references(value: Any, path: str, found: list[tuple[str, str]]) -> None:
    # Paths are built for containers only: most values are strings, and a path for each of
    # them cost more than the walk itself.
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if key == "reference":
                    found.append((item, f"{path}.reference"))
            elif isinstance(item, dict | list):
                _collect_references(item, f"{path}.{key}", found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                _collect_references(item, f"{path}[{index}]", found)


class Resolver:
    def __init__(self, bundle: ParsedBundle) -> None:
        self.bundle = bundle
        self._found: dict[tuple[int, str], list[tuple[str, str]]] = {}

    def references(self, element: Element) -> list[tuple[str, str]]:
        """:func:`_references` of a resource, walked once however often it is asked for
        (every entry is checked, then walked again from each order to find its site)."""
        key = (id(element.data), element.path)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = _references(element.data, element.path)
        return found

    def resolve(self, reference: str, container: Entry, path: str) -> Resolved:
        if reference.startswith("#"):
            for index, item in enumerate(container.resource.children("contained")):
                if item.data.get("id") == reference[1:]:
                    kind = item.string("resourceType", required=True) or ""
                    element = Element(item.data, f"{container.path}.contained[{index}]")
                    return Resolved(element, kind, container)
            raise FhirError(
                "invalid",
                f"{path} '{reference}' names no contained resource of {container.path}.",
                path,
            )
        key = reference.split("/_history/", 1)[0]
        found: int | None = self.bundle.by_reference.get(key)
        if found is None and "://" not in key and not key.startswith("urn:"):
            # A relative reference in an entry with an absolute fullUrl means that server's
            # resource (FHIR's bundle resolution rules): the entry whose fullUrl it is.
            base = _service_base(container.full_url)
            if base:
                found = self.bundle.by_reference.get(f"{base}/{key}")
        if found is None and "/" in key and not key.startswith("urn:"):
            relative = "/".join(key.rstrip("/").split("/")[-2:])
            found = self.bundle.by_reference.get(relative)
        if found is None:
            raise FhirError(
                "invalid",
                f"{path} '{reference}' does not resolve inside the bundle; include the "
                "resource as an entry (fullUrl) or as a contained resource.",
                path,
            )
        target = self.bundle.entries[found]
        return Resolved(target.resource, target.resource_type, target)

    def check_all(self, entry: Entry) -> None:
        for reference, path in self.references(entry.resource):
            self.resolve(reference, entry, path)

    def follow(self, element: Element, name: str, container: Entry) -> Resolved | None:
        reference = element.child(name)
        if reference is None:
            return None
        target = reference.string("reference")
        if target is None:
            return None
        return self.resolve(target, container, reference.at("reference"))

    def reachable(self, start: Resolved) -> Iterator[Resolved]:
        """Every resource reachable from ``start`` by references (breadth first)."""
        seen = {id(start.element.data)}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            yield current
            for reference, path in self.references(current.element):
                target = self.resolve(reference, current.container, path)
                if id(target.element.data) not in seen:
                    seen.add(id(target.element.data))
                    queue.append(target)


# --- supporting resources -----------------------------------------------------------------


def check_elements(bundle: ParsedBundle, entry: Entry, element: Element, kind: str) -> None:
    """The top-level element names of a resource the gateway reads: see
    :mod:`adapters.fhir.element_names`. Warnings are kept for ``entry``'s answer."""
    warnings = element_names.check(
        element, kind, lenient=bundle.lenient, may_be_lenient=bundle.may_be_lenient
    )
    if kind in ORDER_TYPES:
        # Also a MedicationRequest folded into a ServiceRequest's order: a cancelled one
        # or one not to perform would otherwise be answered "recorded".
        check_request_status(element, kind)
    if warnings:
        bundle.warnings.setdefault(entry.index, []).extend(warnings)


def check_supporting(resolved: Resolved) -> None:
    """The codes we rely on in Observation, Specimen and Patient are real codes."""
    element = resolved.element
    if resolved.resource_type == "Observation":
        element.code("status", t.OBSERVATION_STATUS, required=True)
        code = element.child("code", required=True)
        assert code is not None
        if not code.has("coding") and not code.has("text"):
            raise FhirError("required", f"{code.path} needs a coding or text.", code.path)
        quantity = element.child("valueQuantity")
        if quantity is not None and not isinstance(quantity.data.get("value"), int | float):
            raise FhirError(
                "value", f"{quantity.at('value')} must be a number.", quantity.at("value")
            )
    elif resolved.resource_type == "Specimen":
        element.code("status", t.SPECIMEN_STATUS)
        collection = element.child("collection")
        if collection is not None:
            collection.datetime("collectedDateTime")
    elif resolved.resource_type == "Patient":
        element.code("gender", t.ADMINISTRATIVE_GENDER)
        element.date("birthDate")


def _identifiers(element: Element) -> Iterator[tuple[str | None, str | None, Element]]:
    for identifier in element.children("identifier"):
        yield identifier.string("system"), identifier.string("value"), identifier


def _has_type(identifier: Element, code: str) -> bool:
    concept = identifier.child("type")
    if concept is None:
        return False
    return any(
        coding.string("code") == code and coding.string("system") in (None, t.V2_0203)
        for coding in concept.children("coding")
    )


def patient_identity(patient: Element, profile: FhirProfile) -> PatientIdentity:
    mrn = next(
        (
            value
            for system, value, identifier in _identifiers(patient)
            if value and (system == profile.identifiers.mrn_system or _has_type(identifier, "MR"))
        ),
        None,
    )
    if mrn is None:
        raise FhirError(
            "required",
            f"{patient.at('identifier')} needs the medical record number (system "
            f"{profile.identifiers.mrn_system} or type MR).",
            patient.at("identifier"),
        )
    names = patient.children("name", required=True)
    name = next((item for item in names if item.data.get("use") == "official"), names[0])
    family = name.string("family", required=True)
    gender = patient.code("gender", t.ADMINISTRATIVE_GENDER)
    try:
        return PatientIdentity(
            mrn=mrn,
            family_name=family or "",
            given_name=first_string(name.data.get("given")),
            birth_date=patient.date("birthDate"),
            sex=t.SEX_BY_GENDER[gender] if gender else None,
        )
    except ValidationError as exc:
        raise FhirError(
            "value", f"{patient.path}: {exc.errors()[0]['msg']}", patient.path
        ) from None


def clinician(resolved: Resolved | None) -> Clinician | None:
    if resolved is None or resolved.resource_type != "Practitioner":
        return None
    element = resolved.element
    ident = next((value for _, value, _ in _identifiers(element) if value), None)
    ident = ident or element.data.get("id")
    name = None
    names = element.children("name")
    if names:
        first = names[0]
        name = first.string("text") or " ".join(
            part for part in (first_string(first.data.get("given")), first.string("family")) if part
        )
    if not ident:
        return Clinician(id=name, name=name) if name else None
    return Clinician(id=str(ident), name=name or None)


# --- one order ----------------------------------------------------------------------------


@dataclass
class OrderPlan:
    entry: Entry
    command: CreateOrder
    profile: FhirProfile
    patient_entry: Entry | None
    criteria: tuple[str | None, str] | None  # (system, value) of ifNoneExist identifier=


def parse_if_none_exist(value: str, path: str) -> tuple[str | None, str]:
    """``identifier=[system|]value``: the one criterion the order's UNIQUE keys back."""
    params = parse_qsl(value.lstrip("?"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier" or not params[0][1]:
        raise FhirError(
            "not-supported",
            f"{path} '{value}' is not supported; use identifier=<system>|<value> (the placer "
            "order number or the CoI).",
            path,
        )
    token = params[0][1]
    if "|" in token:
        system, _, ident = token.partition("|")
        return (system or None), ident
    return None, token


def _site(
    resolver: Resolver, order: Resolved, bundle: ParsedBundle, config: FhirConfig
) -> tuple[Site, FhirProfile]:
    candidates = [found for found in resolver.reachable(order) if found.resource_type in SITE_TYPES]
    candidates += [
        Resolved(entry.resource, entry.resource_type, entry)
        for entry in bundle.entries
        if entry.resource_type in SITE_TYPES
    ]
    matches: dict[str, FhirProfile] = {}
    for candidate in candidates:
        for system, value, _ in _identifiers(candidate.element):
            for profile in config.profiles.site_profiles():
                if profile.site and profile.means_this_site(system, value):
                    matches[profile.site] = profile
    if len(matches) != 1:
        reason = (
            "no Organization or Location in the bundle carries a known site identifier"
            if not matches
            else f"the bundle names several sites ({', '.join(sorted(matches))})"
        )
        raise FhirError(
            "business-rule",
            f"The treatment site of {order.element.path} is not known: {reason}.",
            order.element.path,
        )
    site_id, profile = next(iter(matches.items()))
    config_site = config.sites.get(site_id)
    if config_site is None:
        raise FhirError("business-rule", f"Site '{site_id}' is not configured.", order.element.path)
    return Site(id=site_id, name=config_site.name, facility_code=config_site.facility_code), profile


def check_request_status(request: Element, resource_type: str) -> None:
    """An order's ``status`` and ``intent`` are R4 modifiers: only an active order (intent
    ``order`` or ``original-order``) is placed, or recorded beside the order it belongs
    to. A cancelled, completed or entered-in-error request, or a proposal or plan, is not an
    order to treat."""
    is_service_request = resource_type == "ServiceRequest"
    statuses = t.REQUEST_STATUS if is_service_request else t.MEDICATION_REQUEST_STATUS
    intents = t.REQUEST_INTENT if is_service_request else t.MEDICATION_REQUEST_INTENT
    status = request.code("status", statuses, required=True)
    intent = request.code("intent", intents, required=True)
    if status != "active":
        raise FhirError(
            "business-rule",
            f"{request.at('status')} is '{status}'; only an active order can be placed.",
            request.at("status"),
        )
    if intent not in t.ORDER_INTENTS:
        raise FhirError(
            "business-rule",
            f"{request.at('intent')} is '{intent}'; a therapy is ordered with intent "
            "'order' or 'original-order'.",
            request.at("intent"),
        )


def plan_order(
    entry: Entry, resolver: Resolver, bundle: ParsedBundle, config: FhirConfig
) -> OrderPlan:
    request = entry.resource
    is_service_request = entry.resource_type == "ServiceRequest"
    # Modifiers, status and intent included, were checked with the entry's element names
    # (check_elements), in every mode.
    subject = resolver.follow(request, "subject", entry)
    if subject is None:
        raise FhirError("required", f"{request.at('subject')} is required.", request.at("subject"))
    if subject.resource_type != "Patient":
        raise FhirError(
            "invalid",
            f"{request.at('subject')} must reference a Patient, not {subject.resource_type}.",
            request.at("subject.reference"),
        )
    site, profile = _site(resolver, Resolved(request, entry.resource_type, entry), bundle, config)
    if subject.container.resource is not subject.element:
        # A contained Patient (its modifiers included); a Patient entry is checked with
        # the other entries.
        check_elements(bundle, entry, subject.element, "Patient")
    else:
        # Its modifiers again: in a batch the Patient's entry may come after the order's,
        # and fail alone, while the order must not be placed on it either.
        element_names.refuse_modifiers(subject.element, "Patient")
    patient = patient_identity(subject.element, profile)

    concept_name = "code" if is_service_request else "medicationCodeableConcept"
    if not request.has(concept_name):
        raise FhirError(
            "required",
            f"{request.at(concept_name)} is required: it names the therapy.",
            request.at(concept_name),
        )
    therapy = None
    codings = list(request.codings(concept_name))
    for system, code, _ in codings:
        therapy = profile.therapy_for(system, code)
        if therapy:
            break
    if therapy is None:
        known = ", ".join(f"{item.system}|{item.code}" for item in profile.therapy_codes)
        where = codings[0][2] if codings else request.at(concept_name)
        raise FhirError(
            "code-invalid",
            f"{request.at(concept_name)} names no therapy this site orders; known codes: {known}.",
            where,
        )

    placer = next(
        (
            value
            for system, value, identifier in _identifiers(request)
            if value
            and (system == profile.identifiers.placer_system or _has_type(identifier, "PLAC"))
        ),
        None,
    )
    if placer is None:
        raise FhirError(
            "required",
            f"{request.at('identifier')} needs the placer order number (system "
            f"{profile.identifiers.placer_system} or type PLAC).",
            request.at("identifier"),
        )
    planned = request.datetime("occurrenceDateTime") if is_service_request else None
    if planned is None and is_service_request:
        period = request.child("occurrencePeriod")
        planned = period.datetime("start") if period is not None else None
    try:
        command = CreateOrder(
            patient=patient,
            therapy_code=therapy,
            site=site,
            clinician=clinician(resolver.follow(request, "requester", entry)),
            placer_number=placer,
            planned_infusion_at=planned,
        )
    except ValidationError as exc:
        raise FhirError(
            "value", f"{request.path}: {exc.errors()[0]['msg']}", request.path
        ) from None
    criteria = None
    if entry.if_none_exist is not None:
        criteria = parse_if_none_exist(entry.if_none_exist, entry.condition_at)
    patient_entry = subject.container if subject.container.resource is subject.element else None
    return OrderPlan(entry, command, profile, patient_entry, criteria)


def order_entries(bundle: ParsedBundle, resolver: Resolver) -> list[Entry]:
    """ServiceRequests, and MedicationRequests not based on a ServiceRequest in the bundle."""
    orders = []
    for entry in bundle.entries:
        if entry.resource_type == "ServiceRequest":
            orders.append(entry)
        elif entry.resource_type == "MedicationRequest":
            based_on = [
                resolver.resolve(reference, entry, path)
                for reference, path in _references(entry.resource.data.get("basedOn"), entry.path)
            ]
            if not any(found.resource_type == "ServiceRequest" for found in based_on):
                orders.append(entry)
    return orders


# --- running it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    order: TherapyOrder
    created: bool
    patient_id: str
    patient_created: bool


def place(service: OrderService, uow: UnitOfWork, plan: OrderPlan, actor: str) -> Placed:
    """Create the order, or find it when the conditional create's criterion matches."""
    conn = uow.conn
    existing = _find(uow, plan) if plan.criteria else None
    if existing is not None:
        return _matched(conn, plan, existing)
    site_id, mrn = plan.command.site.id, plan.command.patient.mrn
    known_patient = patient_id_by_mrn(conn, site_id, mrn)
    # Where writers run side by side (PostgreSQL), a concurrent conditional create can claim
    # the placer number between the lookup above and our insert: the UNIQUE key refuses
    # ours, and a savepoint takes back what was written before it, so that the order found
    # instead can be the answer. (Plain SQL: begin_nested() cost more than the order's own
    # inserts.) SQLite lets one writer in at a time (BEGIN IMMEDIATE), so nothing can come
    # between: a conflict there is a plain duplicate, and whoever runs the bundle rolls its
    # failure back.
    concurrent = conn.dialect.name != "sqlite"
    if concurrent:
        driver_sql.run(conn, _SAVEPOINT, ())
    try:
        order = service.create_order(plan.command, actor=actor, uow=uow)
    except Conflict as conflict:
        found = None
        if concurrent:
            driver_sql.run(conn, _ROLLBACK_TO, ())
            driver_sql.run(conn, _RELEASE, ())
            found = _find(uow, plan) if plan.criteria else None
        if found is not None:
            # A concurrent request created it first: the conditional create is satisfied.
            return _matched(conn, plan, found)
        existing_id = conflict.details.get("existing_order_id")
        raise FhirError(
            "duplicate",
            f"Placer order number '{plan.command.placer_number}' is already ordered"
            + (f" as ServiceRequest/{existing_id}" if existing_id else "")
            + "; use ifNoneExist (conditional create) to make retries safe.",
            f"{plan.entry.path}.identifier",
        ) from None
    if concurrent:
        # Any other failure fails the bundle: its caller rolls back its transaction or its
        # own savepoint, which takes this one with it.
        driver_sql.run(conn, _RELEASE, ())
    # Registering keeps a known patient's id, so only a new patient needs looking up.
    patient_id = known_patient or patient_id_by_mrn(conn, site_id, mrn) or ""
    return Placed(order, True, patient_id, known_patient is None)


_SAVEPOINT = driver_sql.Statement("SAVEPOINT v2v_place", orders, ())
_ROLLBACK_TO = driver_sql.Statement("ROLLBACK TO SAVEPOINT v2v_place", orders, ())
_RELEASE = driver_sql.Statement("RELEASE SAVEPOINT v2v_place", orders, ())


def _matched(conn: Connection, plan: OrderPlan, found: TherapyOrder) -> Placed:
    """The order a conditional create matched, if it is this order: the same patient and
    therapy. A placer number reused or mistyped for another patient would otherwise be
    answered with that patient's order and Patient id, and the EHR would file them as this
    patient's, so a mismatch is refused and nothing is created."""
    patient_id = patient_id_of(conn, found.id) or ""
    site_id, mrn = plan.command.site.id, plan.command.patient.mrn
    if not patient_id or patient_id != patient_id_by_mrn(conn, site_id, mrn):
        other = "another patient"
    elif found.therapy.code != plan.command.therapy_code:
        other = f"another therapy ({found.therapy.code})"
    else:
        return Placed(found, False, patient_id, False)
    raise FhirError(
        "conflict",
        f"The condition {plan.entry.if_none_exist!r} matched ServiceRequest/{found.id}, "
        f"an order for {other}; nothing was created. One order number names one order of "
        "one patient: check the number, or send a new order with its own number.",
        plan.entry.condition_at,
    )


def _find(uow: UnitOfWork, plan: OrderPlan) -> TherapyOrder | None:
    assert plan.criteria is not None
    system, value = plan.criteria
    if system in (t.COI_SYSTEM, t.ORDER_SYSTEM):
        found = (
            uow.orders.find_by_identifier("coi", value)
            if system == t.COI_SYSTEM
            else uow.orders.get(value)
        )
        # Only the ordering site's own orders can satisfy its condition: another site's
        # order is one it may not see, let alone be answered with.
        return found if found is not None and found.site.id == plan.command.site.id else None
    if system in (None, plan.profile.identifiers.placer_system):
        return uow.orders.find_by_identifier("placer", value, plan.command.site.id)
    raise FhirError(
        "not-supported",
        f"ifNoneExist system '{system}' is neither the placer order number system "
        f"({plan.profile.identifiers.placer_system}) nor the CoI system ({t.COI_SYSTEM}).",
        plan.entry.condition_at,
    )


def error_from(exc: Exception, path: str | None = None) -> FhirError:
    """Any refusal the service layer raises, as a FHIR error."""
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, Conflict):
        return FhirError("duplicate", exc.message, path)
    if isinstance(exc, ServiceError):
        code = {404: "not-found", 409: "conflict", 412: "conflict"}.get(exc.status, "business-rule")
        return FhirError(code, exc.message, path, status=exc.status if exc.status == 412 else None)
    if isinstance(exc, TransitionRefused):
        return FhirError("business-rule", f"{exc.code}: {exc.message}", path)
    if isinstance(exc, DomainError):
        return FhirError("business-rule", exc.message, path)
    if isinstance(exc, ValidationError):
        return FhirError("value", exc.errors()[0]["msg"], path)
    log.exception("unexpected error in the FHIR adapter", exc_info=exc)
    return FhirError("exception", "The gateway failed unexpectedly; nothing was changed.")


def _warned(response: dict[str, Any], warnings: list[Issue] | None) -> dict[str, Any]:
    if warnings:
        response["outcome"] = operation_outcome(warnings)
    return response


def _created(placed: Placed, warnings: list[Issue] | None = None) -> dict[str, Any]:
    order = placed.order
    response = {
        "status": "201 Created" if placed.created else "200 OK",
        "location": f"ServiceRequest/{order.id}/_history/{order.version}",
        "etag": f'W/"{order.version}"',
        "lastModified": instant(order.updated_at),
    }
    return _warned(response, warnings)


def _patient_response(placed: Placed, warnings: list[Issue] | None = None) -> dict[str, Any]:
    response = {
        "status": "201 Created" if placed.patient_created else "200 OK",
        "location": f"Patient/{placed.patient_id}",
    }
    return _warned(response, warnings)


def _folded(
    entry: Entry, order_ids: list[str], warnings: list[Issue] | None = None
) -> dict[str, Any]:
    where = ", ".join(f"ServiceRequest/{order_id}" for order_id in order_ids) or "the order"
    recorded = Issue(
        "informational",
        f"{entry.resource_type} recorded with {where} and kept in the stored message; "
        "it is not served as a resource of its own.",
        severity="information",
    )
    return {"status": "200 OK", "outcome": operation_outcome([recorded, *(warnings or [])])}


@dataclass(frozen=True)
class BundleResult:
    response: dict[str, Any]
    placed: list[Placed]

    @property
    def order_ids(self) -> list[str]:
        return [placed.order.id for placed in self.placed]


def plan_transaction(bundle: ParsedBundle, config: FhirConfig) -> list[OrderPlan]:
    """Every check that needs no database, and the orders to place: callers run this before
    taking the write lock, which is then held for the writes alone."""
    resolver = Resolver(bundle)
    bundle.warnings.clear()
    for entry in bundle.entries:
        check_elements(bundle, entry, entry.resource, entry.resource_type)
        resolver.check_all(entry)
        check_supporting(Resolved(entry.resource, entry.resource_type, entry))
    orders = order_entries(bundle, resolver)
    if not orders:
        raise FhirError(
            "business-rule",
            "The bundle orders nothing: add a ServiceRequest (or MedicationRequest).",
            "Bundle.entry",
        )
    return [plan_order(entry, resolver, bundle, config) for entry in orders]


def run_transaction(
    service: OrderService,
    uow: UnitOfWork,
    bundle: ParsedBundle,
    config: FhirConfig,
    actor: str,
    plans: list[OrderPlan] | None = None,
) -> BundleResult:
    """All or nothing: the first problem raises and the caller rolls everything back.
    ``plans`` is :func:`plan_transaction` of ``bundle`` when the caller has it already."""
    if plans is None:
        plans = plan_transaction(bundle, config)
    responses: dict[int, dict[str, Any]] = {}
    placed_ids: list[str] = []
    placed_all: list[Placed] = []
    for plan in plans:
        try:
            placed = place(service, uow, plan, actor)
        except Exception as exc:
            raise error_from(exc, plan.entry.path) from exc
        placed_all.append(placed)
        placed_ids.append(placed.order.id)
        responses[plan.entry.index] = _created(placed, bundle.warnings.get(plan.entry.index))
        if plan.patient_entry is not None:
            patient_at = plan.patient_entry.index
            responses.setdefault(
                patient_at, _patient_response(placed, bundle.warnings.get(patient_at))
            )
    entries = [
        {
            **({"fullUrl": entry.full_url} if entry.full_url else {}),
            "response": responses.get(entry.index)
            or _folded(entry, placed_ids, bundle.warnings.get(entry.index)),
        }
        for entry in bundle.entries
    ]
    return BundleResult(_response_bundle("transaction-response", entries), placed_all)


def run_batch(
    service: OrderService, uow: UnitOfWork, bundle: ParsedBundle, config: FhirConfig, actor: str
) -> BundleResult:
    """Each entry on its own: a failure is that entry's answer and changes nothing else."""
    resolver = Resolver(bundle)
    responses: dict[int, dict[str, Any]] = {}
    placed_ids: list[str] = []
    placed_all: list[Placed] = []
    orders = {entry.index for entry in order_entries_safely(bundle, resolver)}
    bundle.warnings.clear()
    for entry in bundle.entries:
        try:
            with audit.discard_on_error(uow.conn), uow.conn.begin_nested():
                check_elements(bundle, entry, entry.resource, entry.resource_type)
                resolver.check_all(entry)
                check_supporting(Resolved(entry.resource, entry.resource_type, entry))
                if entry.index in orders:
                    placed = place(service, uow, plan_order(entry, resolver, bundle, config), actor)
                    placed_all.append(placed)
                    placed_ids.append(placed.order.id)
                    responses[entry.index] = _created(placed, bundle.warnings.get(entry.index))
        except Exception as exc:
            error = error_from(exc, entry.path)
            responses[entry.index] = {
                "status": f"{error.status} {_REASONS.get(error.status, 'Error')}",
                "outcome": error.outcome(),
            }
    entries = [
        {
            **({"fullUrl": entry.full_url} if entry.full_url else {}),
            "response": responses.get(entry.index)
            or _folded(entry, placed_ids, bundle.warnings.get(entry.index)),
        }
        for entry in bundle.entries
    ]
    return BundleResult(_response_bundle("batch-response", entries), placed_all)


def order_entries_safely(bundle: ParsedBundle, resolver: Resolver) -> list[Entry]:
    """Like :func:`order_entries`, but a bad basedOn leaves the entry to fail on its own."""
    try:
        return order_entries(bundle, resolver)
    except FhirError:
        return [entry for entry in bundle.entries if entry.resource_type in ORDER_TYPES]


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
}


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def single_resource_bundle(resource: dict[str, Any], if_none_exist: str | None) -> dict[str, Any]:
    """``POST /fhir/ServiceRequest`` is a one-entry transaction (contained Patient etc.)."""
    request: dict[str, Any] = {"method": "POST", "url": str(resource.get("resourceType"))}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": resource, "request": request}],
    }


def failure(error: FhirError) -> dict[str, Any]:
    return operation_outcome(error.issues)


__all__ = [
    "BundleResult",
    "Issue",
    "load_json",
    "parse_bundle",
    "run_batch",
    "run_transaction",
    "single_resource_bundle",
]
