"""One order row → the FHIR resources it is served as, with the site's identifier systems."""

from __future__ import annotations

from typing import Any

from adapters.fhir import resources
from adapters.fhir.mapping import FhirConfig, FhirProfile
from adapters.fhir.reads import OrderRow
from gateway.domain.model import TherapyOrder
from gateway.domain.rules import TherapyRules
from gateway.store.audit import AuditEntry


def profile_of(config: FhirConfig, order: TherapyOrder) -> FhirProfile:
    return config.profiles.for_site(config.sites.get(order.site.id))


def task(config: FhirConfig, row: OrderRow) -> dict[str, Any]:
    profile = profile_of(config, row.order)
    return resources.task(row.order, placer_system=profile.identifiers.placer_system)


def service_request(config: FhirConfig, row: OrderRow) -> dict[str, Any]:
    profile = profile_of(config, row.order)
    coding = profile.coding_for(row.order.therapy.code)
    return resources.service_request(
        row.order,
        placer_system=profile.identifiers.placer_system,
        therapy_coding=(coding.system, coding.code) if coding else None,
    )


def products(row: OrderRow, rules: TherapyRules | None) -> list[dict[str, Any]]:
    return [
        resources.biologically_derived_product(row.order, unit, rules) for unit in row.order.units
    ]


def provenances(order: TherapyOrder) -> list[dict[str, Any]]:
    return [resources.provenance(order, event) for event in order.custody_events]


def audit_events(order: TherapyOrder, log: list[AuditEntry]) -> list[dict[str, Any]]:
    scans = [resources.scan_audit_event(order, scan) for scan in order.scans]
    entries = [resources.log_audit_event(order.id, entry) for entry in log]
    return sorted(scans + entries, key=lambda resource: str(resource["recorded"]))
