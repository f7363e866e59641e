"""Code systems and the required-binding value sets we read.

fhir.resources does not check codes against their value sets, and we parse the hot path
without it anyway, so every code the mapping depends on is checked here against the R4
value set it is bound to.
"""

from __future__ import annotations

V2V = "https://vein2vein.dev/fhir"

#: Identifier systems the gateway itself assigns.
COI_SYSTEM = f"{V2V}/sid/coi"
ORDER_SYSTEM = f"{V2V}/sid/order"
PSEUDONYM_SYSTEM = f"{V2V}/sid/pseudonym"
UNIT_SYSTEM = f"{V2V}/sid/unit"
MANUFACTURER_ORDER_SYSTEM = f"{V2V}/sid/manufacturer-order"
MANUFACTURER_SYSTEM = f"{V2V}/sid/manufacturer"

#: Code systems the gateway defines.
ORDER_STATE_SYSTEM = f"{V2V}/CodeSystem/order-state"
THERAPY_SYSTEM = f"{V2V}/CodeSystem/therapy"
PRODUCT_CODE_SYSTEM = f"{V2V}/CodeSystem/product-code"
MILESTONE_SYSTEM = f"{V2V}/CodeSystem/milestone"
CUSTODY_ACTION_SYSTEM = f"{V2V}/CodeSystem/custody-action"
SCAN_CHECKPOINT_SYSTEM = f"{V2V}/CodeSystem/scan-checkpoint"
AUDIT_ACTION_SYSTEM = f"{V2V}/CodeSystem/audit-action"
EVENT_SYSTEM = f"{V2V}/CodeSystem/order-event"
HOLD_REASON_SYSTEM = f"{V2V}/CodeSystem/hold-reason"
TASK_INPUT_SYSTEM = f"{V2V}/CodeSystem/task-input"

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
AUDIT_EVENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"

BUNDLE_TYPES = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
HTTP_VERBS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
REQUEST_STATUS = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)
REQUEST_INTENT = frozenset(
    {
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
MEDICATION_REQUEST_STATUS = frozenset(
    {
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    }
)
MEDICATION_REQUEST_INTENT = frozenset(
    {
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
#: Intents that make a request an order we act on (a proposal or plan is not one).
ORDER_INTENTS = frozenset({"order", "original-order"})
ADMINISTRATIVE_GENDER = frozenset({"male", "female", "other", "unknown"})
OBSERVATION_STATUS = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
SPECIMEN_STATUS = frozenset({"available", "unavailable", "unsatisfactory", "entered-in-error"})
TASK_STATUS = frozenset(
    {
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    }
)
TASK_INTENT = frozenset(
    {
        "unknown",
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)

SEX_BY_GENDER = {"female": "F", "male": "M", "other": "O", "unknown": "U"}
GENDER_BY_SEX = {sex: gender for gender, sex in SEX_BY_GENDER.items()}
