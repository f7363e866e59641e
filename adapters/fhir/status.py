"""How the canonical lifecycle reads in FHIR, and back.

``Task.status`` is FHIR's coarse workflow state; ``Task.businessStatus`` carries the exact
CGT milestone (the canonical state, or ON_HOLD). The coarse mapping follows the meaning of
each task-status code:

* requested   REFERRED: the hospital asked, nobody has acted yet;
* accepted    ENROLLED, SLOT_REQUESTED, SLOT_CONFIRMED: the manufacturer took the order on;
* ready       APHERESIS_SCHEDULED: everything is in place, no cells have moved yet;
* in-progress COLLECTED … THAWED, RELEASED_OOS included: cells are in the chain;
* on-hold     any active hold, and MFG_FAILED (waiting for a re-collection or
  cancellation decision, so not FHIR's terminal ``failed``);
* completed   INFUSED;  cancelled   CANCELLED.

``ServiceRequest.status`` is the order's own status: ``active`` until infusion
(``completed``) or cancellation (``revoked``), ``on-hold`` while held. It agrees with the
HL7 V2-to-FHIR IG's ORC-5 (table 0038) → RequestStatus map for the ORC-5 code the same
state carries on a v2 interface (:data:`ORC5_BY_STATE`).
"""

from __future__ import annotations

from gateway.domain.model import HoldReason, TherapyOrder
from gateway.domain.states import TERMINAL_STATES, EventType, OrderState

S = OrderState

TASK_STATUS_BY_STATE: dict[OrderState, str] = {
    S.REFERRED: "requested",
    S.ENROLLED: "accepted",
    S.SLOT_REQUESTED: "accepted",
    S.SLOT_CONFIRMED: "accepted",
    S.APHERESIS_SCHEDULED: "ready",
    S.COLLECTED: "in-progress",
    S.SHIPPED_TO_MFG: "in-progress",
    S.RECEIVED_AT_MFG: "in-progress",
    S.MANUFACTURING: "in-progress",
    S.RELEASED: "in-progress",
    S.RELEASED_OOS: "in-progress",
    S.MFG_FAILED: "on-hold",
    S.SHIPPED_TO_SITE: "in-progress",
    S.RECEIVED_AT_SITE: "in-progress",
    S.STORED: "in-progress",
    S.THAWED: "in-progress",
    S.INFUSED: "completed",
    S.CANCELLED: "cancelled",
}

#: Task.status codes the facade can ever emit (search by any other matches nothing).
EMITTED_TASK_STATUSES = frozenset(TASK_STATUS_BY_STATE.values())


def task_status(order: TherapyOrder) -> str:
    if order.on_hold and order.state not in TERMINAL_STATES:
        return "on-hold"
    return TASK_STATUS_BY_STATE[order.state]


def request_status(order: TherapyOrder) -> str:
    if order.state is S.INFUSED:
        return "completed"
    if order.state is S.CANCELLED:
        return "revoked"
    if order.on_hold:
        return "on-hold"
    return "active"


#: A search condition: (states, held, also any live held order). ``held`` True matches
#: held orders only, False unheld (or terminal) only, None either.
StatusCondition = tuple[frozenset[OrderState], bool | None, bool]
_NOTHING: StatusCondition = (frozenset(), None, False)


def task_status_condition(status: str) -> StatusCondition:
    states = frozenset(state for state, code in TASK_STATUS_BY_STATE.items() if code == status)
    if status == "on-hold":
        return states, None, True
    if status in ("completed", "cancelled"):
        return states, None, False
    return (states, False, False) if states else _NOTHING


def request_status_condition(status: str) -> StatusCondition:
    if status == "active":
        return frozenset(set(OrderState) - TERMINAL_STATES), False, False
    if status == "on-hold":
        return frozenset(), None, True
    if status == "completed":
        return frozenset({S.INFUSED}), None, False
    if status == "revoked":
        return frozenset({S.CANCELLED}), None, False
    return _NOTHING


# --- HL7 v2 ORC-5 (table 0038) -----------------------------------------------------------

#: The ORC-5 order status a v2 interface reports for each canonical state.
ORC5_BY_STATE: dict[OrderState, str] = {
    S.REFERRED: "SC",
    S.ENROLLED: "SC",
    S.SLOT_REQUESTED: "SC",
    S.SLOT_CONFIRMED: "SC",
    S.APHERESIS_SCHEDULED: "SC",
    S.COLLECTED: "IP",
    S.SHIPPED_TO_MFG: "IP",
    S.RECEIVED_AT_MFG: "IP",
    S.MANUFACTURING: "IP",
    S.RELEASED: "IP",
    S.RELEASED_OOS: "IP",
    S.MFG_FAILED: "IP",
    S.SHIPPED_TO_SITE: "IP",
    S.RECEIVED_AT_SITE: "IP",
    S.STORED: "IP",
    S.THAWED: "IP",
    S.INFUSED: "CM",
    S.CANCELLED: "CA",
}
ORC5_ON_HOLD = "HD"

#: The V2-to-FHIR IG's ConceptMap table-hl70038-to-request-status (ORC-5 → ServiceRequest).
IG_ORC5_TO_REQUEST_STATUS: dict[str, str] = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}

#: The IG's ConceptMap table-hl70119-to-request-status (ORC-1, used when ORC-5 is empty),
#: for the order-control codes a placer sends.
IG_ORC1_TO_REQUEST_STATUS: dict[str, str] = {
    "NW": "active",
    "CA": "active",
    "DC": "revoked",
    "HD": "active",
    "RL": "active",
    "OC": "revoked",
    "OD": "revoked",
    "OH": "on-hold",
    "CR": "revoked",
    "HR": "on-hold",
}


def orc5(order: TherapyOrder) -> str:
    if order.on_hold and order.state not in TERMINAL_STATES:
        return ORC5_ON_HOLD
    return ORC5_BY_STATE[order.state]


# --- Task updates → lifecycle events ------------------------------------------------------

#: businessStatus code (the target canonical state) → the event that reaches it.
EVENT_FOR_TARGET_STATE: dict[OrderState, EventType] = {
    S.ENROLLED: EventType.ENROLL,
    S.SLOT_REQUESTED: EventType.REQUEST_SLOT,
    S.SLOT_CONFIRMED: EventType.CONFIRM_SLOT,
    S.APHERESIS_SCHEDULED: EventType.SCHEDULE_APHERESIS,
    S.COLLECTED: EventType.COLLECT,
    S.SHIPPED_TO_MFG: EventType.SHIP_TO_MFG,
    S.RECEIVED_AT_MFG: EventType.RECEIVE_AT_MFG,
    S.MANUFACTURING: EventType.START_MANUFACTURING,
    S.RELEASED: EventType.RELEASE,
    S.RELEASED_OOS: EventType.RELEASE_OOS,
    S.MFG_FAILED: EventType.FAIL_MANUFACTURING,
    S.SHIPPED_TO_SITE: EventType.SHIP_TO_SITE,
    S.RECEIVED_AT_SITE: EventType.RECEIVE_AT_SITE,
    S.STORED: EventType.STORE,
    S.THAWED: EventType.THAW,
    S.INFUSED: EventType.INFUSE,
    S.CANCELLED: EventType.CANCEL,
}

#: Task.status changes that mean one event whatever the milestone.
EVENT_FOR_TASK_STATUS: dict[str, EventType] = {
    "cancelled": EventType.CANCEL,
    "completed": EventType.INFUSE,
    "on-hold": EventType.PLACE_HOLD,
}


def hold_reason(code: str | None) -> HoldReason:
    try:
        return HoldReason(code) if code else HoldReason.OTHER
    except ValueError:
        return HoldReason.OTHER
