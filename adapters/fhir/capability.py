"""``/fhir/metadata``: the CapabilityStatement. It lists exactly what ``api.py`` serves;
a test walks it and calls every interaction and search parameter it claims."""

from __future__ import annotations

from typing import Any

from adapters.fhir.search import patient_params
from adapters.fhir.terminology import V2V

FHIR_VERSION = "4.0.1"
SOFTWARE_VERSION = "0.1.0"


def _param(name: str, kind: str, documentation: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": documentation}


_COUNT = _param("_count", "number", "Page size (default 20, at most 200); next links page on")
_LAST_UPDATED = _param(
    "_lastUpdated", "date", "eq, gt, lt, ge, le prefixes; a date or a dateTime with a zone"
)
_ORDER_IDENTIFIER = _param(
    "identifier",
    "token",
    "system|value: the CoI, the hospital's placer order number, the manufacturer's order "
    "number or the gateway's order id",
)


def _order_params(status_doc: str, resource_type: str) -> list[dict[str, str]]:
    return [
        _param("_id", "token", "The order id"),
        _param("status", "token", status_doc),
        _ORDER_IDENTIFIER,
        *(
            _param(name, "reference", "Patient/<id>: the patient's orders")
            for name in patient_params(resource_type)
        ),
        _LAST_UPDATED,
        _COUNT,
    ]


def capability_statement(base_url: str, published: str) -> dict[str, Any]:
    read_search = [{"code": "read"}, {"code": "search-type"}]
    return {
        "resourceType": "CapabilityStatement",
        "id": "vein2vein",
        "url": f"{V2V}/CapabilityStatement/vein2vein",
        "name": "Vein2veinGateway",
        "title": "vein2vein gateway FHIR facade",
        "status": "active",
        "date": published,
        "publisher": "vein2vein",
        "kind": "instance",
        "software": {"name": "vein2vein", "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "Cell-therapy orders as Task/ServiceRequest; order bundles in",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "POST a transaction or batch Bundle to the base to order a therapy. "
                    "Patient is served to hospital credentials only."
                ),
                "resource": [
                    {
                        "type": "Task",
                        "documentation": "One per order; businessStatus is the CGT milestone",
                        "interaction": [*read_search, {"code": "update"}, {"code": "patch"}],
                        "versioning": "versioned-update",
                        "readHistory": False,
                        "updateCreate": False,
                        "conditionalCreate": False,
                        "conditionalUpdate": False,
                        "conditionalDelete": "not-supported",
                        "searchInclude": ["Task:focus"],
                        "searchParam": _order_params(
                            "Task.status (see docs/fhir.md for the lifecycle mapping)", "Task"
                        ),
                    },
                    {
                        "type": "ServiceRequest",
                        "documentation": "The order; created from a bundle or a POST with "
                        "contained Patient (If-None-Exist: identifier=system|value)",
                        "interaction": [*read_search, {"code": "create"}],
                        "versioning": "versioned",
                        "readHistory": False,
                        "updateCreate": False,
                        "conditionalCreate": True,
                        "conditionalUpdate": False,
                        "conditionalDelete": "not-supported",
                        "searchParam": _order_params("ServiceRequest.status", "ServiceRequest"),
                    },
                    {
                        "type": "BiologicallyDerivedProduct",
                        "documentation": "One per bag or cassette (apheresis and final product)",
                        "interaction": read_search,
                        "versioning": "versioned",
                        "searchParam": [
                            _param("identifier", "token", "The DIN-style unit identifier"),
                            _param("request", "reference", "ServiceRequest/<order id>"),
                        ],
                    },
                    {
                        "type": "Provenance",
                        "documentation": "Chain-of-custody events",
                        "interaction": read_search,
                        "versioning": "versioned",
                        "searchParam": [
                            _param(
                                "target",
                                "reference",
                                "Task/<id> or BiologicallyDerivedProduct/<id> (required)",
                            ),
                            _COUNT,
                        ],
                    },
                    {
                        "type": "AuditEvent",
                        "documentation": "Bedside and receipt scans, and the order's audit log",
                        "interaction": read_search,
                        "versioning": "versioned",
                        "searchParam": [
                            _param("entity", "reference", "Task/<id> (required)"),
                            _COUNT,
                        ],
                    },
                    {
                        "type": "Patient",
                        "documentation": "Hospital credentials only; every read and every "
                        "search that finds a patient is audited",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "versioning": "versioned",
                        "searchParam": [
                            _param("identifier", "token", "[system|]MRN at the caller's site"),
                            _COUNT,
                        ],
                    },
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
