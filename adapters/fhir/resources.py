"""The canonical order, seen as FHIR R4 resources.

Resources are built as plain JSON-ready dicts: the read path serves thousands of requests
a second and pydantic models would cost more than the database. The test suite validates
every shape here with ``fhir.resources.R4B``.

Ids: a Task and its ServiceRequest share the order id; a BiologicallyDerivedProduct,
Provenance or AuditEvent id is ``<order id>.<unit, custody event, scan or log id>`` so a
read needs no index beyond the order's.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from adapters.fhir import status as fhir_status
from adapters.fhir import terminology as t
from adapters.fhir.reads import PatientRow
from gateway.domain.model import (
    CustodyEvent,
    Milestones,
    ScanVerdict,
    TherapyOrder,
    Unit,
    UnitKind,
)
from gateway.domain.rules import TherapyRules
from gateway.domain.states import OrderState
from gateway.store.audit import AuditEntry

PLACER_TYPE = {"coding": [{"system": t.V2_0203, "code": "PLAC", "display": "Placer Identifier"}]}
FILLER_TYPE = {"coding": [{"system": t.V2_0203, "code": "FILL", "display": "Filler Identifier"}]}
MRN_TYPE = {"coding": [{"system": t.V2_0203, "code": "MR", "display": "Medical record number"}]}
SEPARATOR = "."


def instant(value: datetime) -> str:
    """FHIR instant: always with a zone, UTC on the wire."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def meta(version: int | str, last_updated: datetime) -> dict[str, str]:
    return {"versionId": str(version), "lastUpdated": instant(last_updated)}


def etag(resource: dict[str, Any]) -> str:
    return f'W/"{resource["meta"]["versionId"]}"'


def compound_id(order_id: str, part: str) -> str:
    return f"{order_id}{SEPARATOR}{part}"


def split_id(resource_id: str) -> tuple[str, str] | None:
    order_id, separator, part = resource_id.partition(SEPARATOR)
    return (order_id, part) if separator and part else None


def order_identifiers(order: TherapyOrder, placer_system: str) -> list[dict[str, Any]]:
    identifiers: list[dict[str, Any]] = [
        {"use": "official", "system": t.ORDER_SYSTEM, "value": order.id}
    ]
    if order.coi:
        identifiers.append({"use": "official", "system": t.COI_SYSTEM, "value": order.coi})
    if order.external_ids.placer_number:
        identifiers.append(
            {
                "type": PLACER_TYPE,
                "system": placer_system,
                "value": order.external_ids.placer_number,
            }
        )
    if order.external_ids.manufacturer_order_id:
        identifiers.append(
            {
                "type": FILLER_TYPE,
                "system": f"{t.MANUFACTURER_ORDER_SYSTEM}/{order.therapy.manufacturer}",
                "value": order.external_ids.manufacturer_order_id,
            }
        )
    return identifiers


def _patient_reference(order: TherapyOrder) -> dict[str, Any]:
    # Task and ServiceRequest are served to every partner: the order's pseudonym, never the
    # MRN, and not the patient's own id either, which is the same on every order of the
    # patient and would link them. The hospital reads Patient/<pseudonym> (see api.py).
    return {
        "reference": f"Patient/{order.patient_pseudonym}",
        "identifier": {"system": t.PSEUDONYM_SYSTEM, "value": order.patient_pseudonym},
    }


def _therapy_concept(order: TherapyOrder, coding: tuple[str, str] | None) -> dict[str, Any]:
    codings = [
        {"system": t.THERAPY_SYSTEM, "code": order.therapy.code, "display": order.therapy.name}
    ]
    if coding is not None and coding != (t.THERAPY_SYSTEM, order.therapy.code):
        codings.insert(0, {"system": coding[0], "code": coding[1]})
    return {"coding": codings, "text": order.therapy.name}


def _manufacturer(order: TherapyOrder) -> dict[str, Any]:
    return {
        "identifier": {"system": t.MANUFACTURER_SYSTEM, "value": order.therapy.manufacturer},
        "display": order.therapy.manufacturer,
    }


def _clinician(order: TherapyOrder) -> dict[str, Any] | None:
    if order.clinician is None:
        return None
    reference: dict[str, Any] = {"identifier": {"value": order.clinician.id}}
    if order.clinician.name:
        reference["display"] = order.clinician.name
    return reference


def business_status(order: TherapyOrder) -> dict[str, Any]:
    code = order.status
    return {
        "coding": [
            {
                "system": t.ORDER_STATE_SYSTEM,
                "code": code,
                "display": code.replace("_", " ").capitalize(),
            }
        ],
        "text": code,
    }


def _milestone_outputs(milestones: Milestones) -> list[dict[str, Any]]:
    outputs = []
    for name, value in milestones:
        if isinstance(value, datetime):
            outputs.append(
                {
                    "type": {"coding": [{"system": t.MILESTONE_SYSTEM, "code": name}]},
                    "valueDateTime": instant(value),
                }
            )
    return outputs


def _status_reason(order: TherapyOrder) -> dict[str, Any] | None:
    if order.state is OrderState.CANCELLED and order.cancellation_reason:
        return {"text": order.cancellation_reason}
    holds = order.active_holds
    if holds and not order.is_terminal:
        hold = holds[0]
        return {
            "coding": [{"system": t.HOLD_REASON_SYSTEM, "code": hold.reason.value}],
            "text": hold.detail or hold.reason.value.replace("_", " "),
        }
    if order.state is OrderState.MFG_FAILED:
        return {"text": "manufacturing failed: waiting for a re-collection or cancellation"}
    return None


def task(order: TherapyOrder, *, placer_system: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": order.id,
        "meta": meta(order.version, order.updated_at),
        "identifier": order_identifiers(order, placer_system),
        "basedOn": [{"reference": f"ServiceRequest/{order.id}"}],
        "status": fhir_status.task_status(order),
        "businessStatus": business_status(order),
        "intent": "order",
        "code": {"coding": [{"system": t.TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "description": f"{order.therapy.name} vein-to-vein journey",
        "focus": {"reference": f"ServiceRequest/{order.id}"},
        "for": _patient_reference(order),
        "executionPeriod": {"start": instant(order.created_at)},
        "authoredOn": instant(order.created_at),
        "lastModified": instant(order.updated_at),
        "owner": _manufacturer(order),
    }
    end = order.milestones.infused_at or order.milestones.cancelled_at
    if order.is_terminal and end is not None:
        resource["executionPeriod"]["end"] = instant(end)
    reason = _status_reason(order)
    if reason is not None:
        resource["statusReason"] = reason
    requester = _clinician(order)
    if requester is not None:
        resource["requester"] = requester
    outputs = _milestone_outputs(order.milestones)
    if outputs:
        resource["output"] = outputs
    return resource


def service_request(
    order: TherapyOrder,
    *,
    placer_system: str,
    therapy_coding: tuple[str, str] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": order.id,
        "meta": meta(order.version, order.updated_at),
        "identifier": order_identifiers(order, placer_system),
        "status": fhir_status.request_status(order),
        "intent": "order",
        "code": _therapy_concept(order, therapy_coding),
        "subject": _patient_reference(order),
        "authoredOn": instant(order.created_at),
        "performer": [_manufacturer(order)],
    }
    if order.milestones.planned_infusion_at is not None:
        resource["occurrenceDateTime"] = instant(order.milestones.planned_infusion_at)
    requester = _clinician(order)
    if requester is not None:
        resource["requester"] = requester
    if order.site.name or order.site.id:
        resource["locationCode"] = [{"text": order.site.name or order.site.id}]
    return resource


def _unit_status(order: TherapyOrder, unit: Unit) -> str:
    if order.state in (OrderState.INFUSED, OrderState.CANCELLED):
        return "unavailable"
    if unit.kind is UnitKind.APHERESIS and unit.collection_cycle < order.collection_cycle:
        return "unavailable"
    return "available"


def biologically_derived_product(
    order: TherapyOrder, unit: Unit, rules: TherapyRules | None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "id": compound_id(order.id, unit.unit_id),
        "meta": meta(order.version, order.updated_at),
        "identifier": [{"system": t.UNIT_SYSTEM, "value": unit.unit_id}],
        "productCategory": "cells",
        "status": _unit_status(order, unit),
        "request": [{"reference": f"ServiceRequest/{order.id}"}],
        "quantity": 1,
        "collection": {"source": _patient_reference(order)},
    }
    if order.coi:
        resource["identifier"].append({"system": t.COI_SYSTEM, "value": order.coi})
    code = unit.product_code or (
        order.therapy.product_code if unit.kind is UnitKind.FINAL_PRODUCT else None
    )
    concept: dict[str, Any] = {"text": f"{unit.kind.value.replace('_', ' ')}"}
    if code:
        concept["coding"] = [{"system": t.PRODUCT_CODE_SYSTEM, "code": code}]
        if unit.division:
            concept["coding"][0]["version"] = unit.division
    resource["productCode"] = concept
    if unit.collected_at is not None:
        resource["collection"]["collectedDateTime"] = instant(unit.collected_at)
    storage: dict[str, Any] = {}
    if unit.storage:
        storage["description"] = unit.storage
    if rules is not None:
        storage["temperature"] = rules.storage.max_celsius
        storage["scale"] = "celsius"
    if unit.expires_at is not None:
        # R4 has no expiry element: the storage period ends when the product expires.
        storage["duration"] = {"end": instant(unit.expires_at)}
        if unit.collected_at is not None:
            storage["duration"]["start"] = instant(unit.collected_at)
    if storage:
        resource["storage"] = [storage]
    if unit.kind is UnitKind.FINAL_PRODUCT:
        parents = [
            {"reference": f"BiologicallyDerivedProduct/{compound_id(order.id, other.unit_id)}"}
            for other in order.units
            if other.kind is UnitKind.APHERESIS and other.collection_cycle == unit.collection_cycle
        ]
        if parents:
            resource["parent"] = parents
    return resource


def _unit_or_task(order: TherapyOrder, unit_id: str | None) -> dict[str, Any]:
    if unit_id and order.unit(unit_id) is not None:
        return {"reference": f"BiologicallyDerivedProduct/{compound_id(order.id, unit_id)}"}
    return {"reference": f"Task/{order.id}"}


def provenance(order: TherapyOrder, event: CustodyEvent) -> dict[str, Any]:
    who = event.who
    agent: dict[str, Any] = {
        "who": {"display": who.person or who.organisation or who.role or "unrecorded"}
    }
    if who.role:
        agent["role"] = [{"text": who.role}]
    if who.organisation and who.person:
        agent["onBehalfOf"] = {"display": who.organisation}
    targets = [_unit_or_task(order, event.unit_id)]
    if targets[0]["reference"] != f"Task/{order.id}":
        targets.append({"reference": f"Task/{order.id}"})
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": compound_id(order.id, event.id),
        "meta": meta(1, event.at),
        "target": targets,
        "occurredDateTime": instant(event.at),
        "recorded": instant(event.at),
        "activity": {
            "coding": [{"system": t.CUSTODY_ACTION_SYSTEM, "code": event.action.value}],
            "text": event.action.value.replace("_", " "),
        },
        "agent": [agent],
    }
    if event.where:
        resource["location"] = {"display": event.where}
    reasons = [text for text in (event.verification, event.reason) if text]
    if reasons:
        resource["reason"] = [{"text": ": ".join(reasons)}]
    if event.signature_meaning:
        # A uri has no spaces; the meaning is free text ("bedside identity check").
        meaning = quote(event.signature_meaning, safe="")
        resource["policy"] = [f"urn:v2v:signature-meaning:{meaning}"]
    return resource


def _audit_source() -> dict[str, Any]:
    return {"observer": {"display": "vein2vein gateway"}}


def scan_audit_event(order: TherapyOrder, scan: ScanVerdict) -> dict[str, Any]:
    entities: list[dict[str, Any]] = [{"what": {"reference": f"Task/{order.id}"}}]
    if scan.unit_id:
        entities.insert(0, {"what": _unit_or_task(order, scan.unit_id)})
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": compound_id(order.id, scan.id),
        "meta": meta(1, scan.at),
        "type": {"system": t.DICOM_DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": t.SCAN_CHECKPOINT_SYSTEM, "code": scan.checkpoint}],
        "action": "E",
        "recorded": instant(scan.at),
        "outcome": "0" if scan.green else "8",
        "agent": [{"who": {"display": scan.user}, "requestor": True}],
        "source": _audit_source(),
        "entity": entities,
    }
    description = [part for part in (scan.reason_code, scan.reason, scan.method) if part]
    if description:
        resource["outcomeDesc"] = "; ".join(description)
    return resource


def log_audit_event(order_id: str, entry: AuditEntry) -> dict[str, Any]:
    """A hash-chained audit-log entry about the order (commands, refusals, PHI access)."""
    outcome = "4" if entry.action in ("order.refused", "message.rejected") else "0"
    action = "R" if entry.action.endswith(".read") else "U"
    if entry.action.endswith(".created"):
        action = "C"
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": compound_id(order_id, f"log-{entry.seq}"),
        "meta": meta(1, entry.at),
        "type": {
            "system": t.AUDIT_EVENT_TYPE_SYSTEM,
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": t.AUDIT_ACTION_SYSTEM, "code": entry.action}],
        "action": action,
        "recorded": instant(entry.at),
        "outcome": outcome,
        "agent": [{"who": {"display": entry.actor}, "requestor": True}],
        "source": _audit_source(),
        "entity": [
            {"what": {"reference": f"Task/{order_id}"}},
            {"what": {"identifier": {"system": "urn:v2v:audit-hash", "value": entry.hash}}},
        ],
    }
    reason = entry.payload.get("reason") if isinstance(entry.payload, dict) else None
    if isinstance(reason, str):
        resource["outcomeDesc"] = reason
    return resource


def patient(
    row: PatientRow, mrn_system: str, pseudonyms: list[str], resource_id: str | None = None
) -> dict[str, Any]:
    """The hospital's own view: PHI. Never served to any other credential. ``resource_id``:
    the id it was read by (an order's pseudonym), else the patient's own."""
    identity = row.identity
    name: dict[str, Any] = {"use": "official", "family": identity.family_name}
    if identity.given_name:
        name["given"] = [identity.given_name]
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": resource_id or row.id,
        "identifier": [{"type": MRN_TYPE, "system": mrn_system, "value": identity.mrn}]
        + [{"system": t.PSEUDONYM_SYSTEM, "value": value} for value in pseudonyms],
        "name": [name],
    }
    if identity.sex:
        resource["gender"] = t.GENDER_BY_SEX[identity.sex]
    if identity.birth_date:
        resource["birthDate"] = _date(identity.birth_date)
    digest = hashlib.sha256(json.dumps(resource, sort_keys=True).encode()).hexdigest()[:16]
    resource["meta"] = meta(digest, row.updated_at)
    return resource


def _date(value: date) -> str:
    return value.isoformat()
