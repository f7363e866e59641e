"""A Task update (PUT, JSON Patch or merge patch) → the one lifecycle event it means.

Only ``status``, ``businessStatus``, ``statusReason`` and ``input`` are read; the rest of
a Task is the gateway's to write. ``businessStatus`` names the milestone reached (a
canonical state) and wins over ``status``; ``status`` alone can cancel (cancelled),
record the infusion (completed), place a hold (on-hold) or release one (back to the
status the order had before the hold). Event details travel as ``Task.input`` with
``type`` coded in the task-input system: the code is the event detail's name
(``slot_start``, ``apheresis_at``, ``coi``, ``reason``…).
"""

from __future__ import annotations

import copy
from typing import Any

from adapters.fhir import element_names
from adapters.fhir import status as fhir_status
from adapters.fhir import terminology as t
from adapters.fhir.elements import Element
from adapters.fhir.outcome import FhirError
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Actor, Source, TherapyOrder
from gateway.domain.states import ON_HOLD, EventType, OrderState
from gateway.numbers import ascii_integer

_DATETIME_DETAILS = frozenset({"slot_start", "apheresis_at", "planned_infusion_at"})
_STRING_DETAILS = frozenset(
    {"coi", "manufacturer_order_id", "unit_id", "hold_id", "reason", "location"}
)


def apply_patch(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A JSON Patch (RFC 6902) list, or a JSON merge patch object, on the current Task."""
    task = copy.deepcopy(current)
    if isinstance(patch, dict):
        for key, value in patch.items():
            if value is None:
                task.pop(key, None)
            else:
                task[key] = value
        return task
    if not isinstance(patch, list):
        raise FhirError("structure", "A PATCH body is a JSON Patch array or a JSON object.")
    for index, operation in enumerate(patch):
        where = f"Parameters[{index}]"
        if not isinstance(operation, dict):
            raise FhirError("structure", f"Patch operation {index} must be an object.", where)
        op, pointer = operation.get("op"), operation.get("path")
        if op not in ("add", "replace", "remove", "test") or not isinstance(pointer, str):
            raise FhirError(
                "not-supported",
                f"Patch operation {index}: op must be add, replace, remove or test with a path.",
                where,
            )
        parent, key = _locate(task, pointer, index)
        if op == "test":
            if _get(parent, key) != operation.get("value"):
                raise FhirError("conflict", f"Patch test failed at {pointer}.", pointer, status=409)
        elif op == "remove":
            _remove(parent, key, pointer)
        else:
            _set(parent, key, operation.get("value"), add=op == "add")
    return task


def _locate(task: dict[str, Any], pointer: str, index: int) -> tuple[Any, str]:
    if not pointer.startswith("/"):
        raise FhirError("value", f"Patch operation {index}: path must start with '/'.", pointer)
    parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
    node: Any = task
    for part in parts[:-1]:
        node = _get(node, part)
        if node is None:
            raise FhirError("value", f"Patch path {pointer} does not exist.", pointer)
    return node, parts[-1]


def _get(node: Any, key: str) -> Any:
    if isinstance(node, list):
        index = ascii_integer(key)
        return node[index] if index is not None and index < len(node) else None
    return node.get(key) if isinstance(node, dict) else None


def _set(node: Any, key: str, value: Any, *, add: bool) -> None:
    if isinstance(node, list):
        if key == "-":
            node.append(value)
        elif (index := ascii_integer(key)) is not None and index < len(node) + add:
            if add:
                node.insert(index, value)
            else:
                node[index] = value
        else:
            raise FhirError("value", f"Patch index {key} is out of range.", key)
    elif isinstance(node, dict):
        node[key] = value


def _remove(node: Any, key: str, pointer: str) -> None:
    index = ascii_integer(key) if isinstance(node, list) else None
    if isinstance(node, list) and index is not None and index < len(node):
        node.pop(index)
    elif isinstance(node, dict) and key in node:
        del node[key]
    else:
        raise FhirError("value", f"Patch path {pointer} does not exist.", pointer)


def event_for(
    order: TherapyOrder,
    current: dict[str, Any],
    proposed: dict[str, Any],
    actor: str,
    role: str | None,
) -> LifecycleEvent | None:
    """The event a proposed Task means, or None when it changes nothing we track."""
    if proposed.get("resourceType") != "Task":
        raise FhirError(
            "invalid",
            f"Expected resourceType 'Task', got {proposed.get('resourceType')!r}.",
            "Task.resourceType",
        )
    if proposed.get("id") not in (None, order.id):
        raise FhirError("invalid", f"Task.id must be {order.id}, the id in the URL.", "Task.id")
    task = Element(proposed, "Task")
    # A misspelt businessStatus would otherwise be an update that changes nothing, answered
    # 200. The answer is the Task, with no place for a warning: nothing unread that changes
    # the request is accepted. A note or a priority is commentary, accepted and not carried
    # (its warnings have nowhere to go; the stored message keeps it).
    element_names.check(task, "Task", may_be_lenient=False)
    new_status = task.code("status", t.TASK_STATUS, required=True)
    new_business = _business_code(task)
    event_type: EventType | None = None
    if new_business is not None and new_business != order.status:
        event_type = _event_for_milestone(order, new_business)
    elif new_status != current["status"]:
        event_type = _event_for_status(order, new_status or "")
    if event_type is None:
        event_type = _event_for_inputs(order, task)
        if event_type is None:
            return None
    return LifecycleEvent(
        type=event_type,
        source=_source(role),
        actor=Actor(person=actor),
        details=_details(task, event_type),
    )


def _business_code(task: Element) -> str | None:
    for system, code, path in task.codings("businessStatus"):
        if system == t.ORDER_STATE_SYSTEM:
            if code != ON_HOLD and code not in OrderState.__members__:
                raise FhirError(
                    "code-invalid",
                    f"{path}.code '{code}' is not an order state of {t.ORDER_STATE_SYSTEM}.",
                    f"{path}.code",
                )
            return code
    return None


def _event_for_milestone(order: TherapyOrder, code: str) -> EventType:
    if code == ON_HOLD:
        return EventType.PLACE_HOLD
    if order.status == ON_HOLD and code == order.state.value:
        return EventType.RELEASE_HOLD
    event = fhir_status.EVENT_FOR_TARGET_STATE.get(OrderState(code))
    if event is None:
        raise FhirError(
            "business-rule",
            f"No event leads to {code}; an order starts there.",
            "Task.businessStatus",
        )
    if OrderState(code) is OrderState.APHERESIS_SCHEDULED and order.state in (
        OrderState.MFG_FAILED,
    ):
        return EventType.RECOLLECT
    return event


def _event_for_inputs(order: TherapyOrder, task: Element) -> EventType | None:
    """With status and businessStatus unchanged, event details alone: a new apheresis time
    for a scheduled collection is a reschedule; any other detail belongs to the event that
    reports it, and is refused rather than answered 200 and dropped."""
    sent = _inputs(task)
    if not sent:
        return None
    if set(sent) == {"apheresis_at"} and order.state is OrderState.APHERESIS_SCHEDULED:
        if sent["apheresis_at"] == order.milestones.apheresis_at:
            return None
        return EventType.RESCHEDULE
    raise FhirError(
        "business-rule",
        f"Task.input {', '.join(sorted(sent))} came with no change of Task.status or "
        "Task.businessStatus: event details are taken with the milestone they belong to "
        "(a new apheresis_at alone reschedules a scheduled collection).",
        "Task.input",
    )


def _event_for_status(order: TherapyOrder, status: str) -> EventType:
    if order.status == ON_HOLD and status == fhir_status.TASK_STATUS_BY_STATE[order.state]:
        return EventType.RELEASE_HOLD
    event = fhir_status.EVENT_FOR_TASK_STATUS.get(status)
    if event is None:
        raise FhirError(
            "business-rule",
            f"Task.status cannot be set to '{status}' directly; set Task.businessStatus to "
            f"the milestone reached ({t.ORDER_STATE_SYSTEM}).",
            "Task.status",
        )
    return event


def _source(role: str | None) -> Source:
    try:
        return Source(role) if role else Source.HOSPITAL
    except ValueError:
        return Source.HOSPITAL


def _details(task: Element, event_type: EventType) -> EventDetails:
    values: dict[str, Any] = {}
    reason = task.child("statusReason")
    if reason is not None:
        if reason.string("text"):
            values["reason"] = reason.string("text")
        for system, code, _ in _codings(reason):
            if system == t.HOLD_REASON_SYSTEM and code:
                values["hold_reason"] = fhir_status.hold_reason(code)
    if event_type is EventType.PLACE_HOLD and "hold_reason" not in values:
        values["hold_reason"] = fhir_status.hold_reason(None)
    values.update(_inputs(task))
    return EventDetails(**{key: value for key, value in values.items() if value is not None})


def _inputs(task: Element) -> dict[str, Any]:
    """The event details given as ``Task.input`` (our task-input codes), by name."""
    values: dict[str, Any] = {}
    for item in task.children("input"):
        names = [code for system, code, _ in item.codings("type") if system == t.TASK_INPUT_SYSTEM]
        if not names:
            continue
        name = names[0] or ""
        if name in _DATETIME_DETAILS:
            values[name] = item.datetime("valueDateTime")
        elif name in _STRING_DETAILS:
            values[name] = item.string("valueString")
        else:
            raise FhirError(
                "code-invalid",
                f"{item.at('type')} '{name}' is not an event detail this endpoint takes.",
                item.at("type"),
            )
    return {key: value for key, value in values.items() if value is not None}


def _codings(concept: Element) -> list[tuple[str | None, str | None, str]]:
    return [
        (coding.string("system"), coding.string("code"), coding.path)
        for coding in concept.children("coding")
    ]
