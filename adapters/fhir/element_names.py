"""The top-level elements of the resources the gateway reads, by their FHIR R4 names.

The inbound reader picks out the elements it needs by name, so a name it does not look
for would otherwise vanish without a word: ``occurrenceDatetime`` (a typo) or
``occurrenceTiming`` (valid R4, but not read) would place an order with no planned
infusion date. Every top-level name is therefore checked here:

- a name that is not an R4 element of the resource is refused (``structure``), with the
  known name it most likely meant;
- an R4 modifier element (``doNotPerform: true``, ``Patient.active: false``, a
  ``modifierExtension``…) that says anything but what the gateway assumes is refused in
  every mode (:data:`MODIFIERS`);
- an R4 element that changes what is asked for but that the gateway does not read is
  reported (``not-supported``): refused, or a warning when the sender asked for lenient
  handling;
- an R4 element that is commentary on the order rather than a parameter of it (a note,
  a priority, dosing text) is accepted with a warning, in any mode: see :data:`COMMENTARY`;
- every other R4 element (narrative, metadata, identifiers, reasons, supporting
  information…) is ignored quietly: it does not change what is ordered.

Nested elements (inside ``subject``, ``code``…) are not checked.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

from adapters.fhir.elements import Element
from adapters.fhir.outcome import FhirError, Issue

_RESOURCE = ("resourceType", "id", "meta", "implicitRules", "language")
_DOMAIN_RESOURCE = ("text", "contained", "extension", "modifierExtension")
# Resource.id is a plain string in R4's JSON, with no ``_id`` for extensions.
_BASE_PRIMITIVES = ("implicitRules", "language")

#: R4 (4.0.1) elements of each resource, choice elements expanded to their typed names.
_ELEMENTS: dict[str, tuple[str, ...]] = {
    "ServiceRequest": (
        "identifier",
        "instantiatesCanonical",
        "instantiatesUri",
        "basedOn",
        "replaces",
        "requisition",
        "status",
        "intent",
        "category",
        "priority",
        "doNotPerform",
        "code",
        "orderDetail",
        "quantityQuantity",
        "quantityRatio",
        "quantityRange",
        "subject",
        "encounter",
        "occurrenceDateTime",
        "occurrencePeriod",
        "occurrenceTiming",
        "asNeededBoolean",
        "asNeededCodeableConcept",
        "authoredOn",
        "requester",
        "performerType",
        "performer",
        "locationCode",
        "locationReference",
        "reasonCode",
        "reasonReference",
        "insurance",
        "supportingInfo",
        "specimen",
        "bodySite",
        "note",
        "patientInstruction",
        "relevantHistory",
    ),
    "MedicationRequest": (
        "identifier",
        "status",
        "statusReason",
        "intent",
        "category",
        "priority",
        "doNotPerform",
        "reportedBoolean",
        "reportedReference",
        "medicationCodeableConcept",
        "medicationReference",
        "subject",
        "encounter",
        "supportingInformation",
        "authoredOn",
        "requester",
        "performer",
        "performerType",
        "recorder",
        "reasonCode",
        "reasonReference",
        "instantiatesCanonical",
        "instantiatesUri",
        "basedOn",
        "groupIdentifier",
        "courseOfTherapyType",
        "insurance",
        "note",
        "dosageInstruction",
        "dispenseRequest",
        "substitution",
        "priorPrescription",
        "detectedIssue",
        "eventHistory",
    ),
    "Patient": (
        "identifier",
        "active",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "deceasedBoolean",
        "deceasedDateTime",
        "address",
        "maritalStatus",
        "multipleBirthBoolean",
        "multipleBirthInteger",
        "photo",
        "contact",
        "communication",
        "generalPractitioner",
        "managingOrganization",
        "link",
    ),
    "Task": (
        "identifier",
        "instantiatesCanonical",
        "instantiatesUri",
        "basedOn",
        "groupIdentifier",
        "partOf",
        "status",
        "statusReason",
        "businessStatus",
        "intent",
        "priority",
        "code",
        "description",
        "focus",
        "for",
        "encounter",
        "executionPeriod",
        "authoredOn",
        "lastModified",
        "requester",
        "performerType",
        "owner",
        "location",
        "reasonCode",
        "reasonReference",
        "insurance",
        "note",
        "relevantHistory",
        "restriction",
        "input",
        "output",
    ),
}

#: The primitive elements, which may carry extensions as ``_<name>``.
_PRIMITIVES: dict[str, tuple[str, ...]] = {
    "ServiceRequest": (
        "instantiatesCanonical",
        "instantiatesUri",
        "status",
        "intent",
        "priority",
        "doNotPerform",
        "occurrenceDateTime",
        "asNeededBoolean",
        "authoredOn",
        "patientInstruction",
    ),
    "MedicationRequest": (
        "status",
        "intent",
        "priority",
        "doNotPerform",
        "reportedBoolean",
        "authoredOn",
        "instantiatesCanonical",
        "instantiatesUri",
    ),
    "Patient": (
        "active",
        "gender",
        "birthDate",
        "deceasedBoolean",
        "deceasedDateTime",
        "multipleBirthBoolean",
        "multipleBirthInteger",
    ),
    "Task": (
        "instantiatesCanonical",
        "instantiatesUri",
        "status",
        "intent",
        "priority",
        "description",
        "authoredOn",
        "lastModified",
    ),
}

_NO_VALUE: tuple[Any, ...] = ()
_ROUTINE = ("routine",)
_DATE_ONLY = "the planned infusion date is read from occurrenceDateTime or occurrencePeriod.start"
_FREE_TEXT = "free text is passed on to no one"
_ONE_DOSE = "an order is for one manufactured dose of the patient's own cells"
_REPLACING = "an order is replaced by cancelling it (Task.status cancelled) and ordering anew"
_PROTOCOL = "the therapy's rules come from the gateway's configuration, not a protocol"

#: R4 elements that change what is asked for, which the gateway does not read: for each,
#: the values that say only what the gateway assumes anyway, and why it matters.
UNREAD: dict[str, dict[str, tuple[tuple[Any, ...], str]]] = {
    "ServiceRequest": {
        "instantiatesCanonical": (_NO_VALUE, _PROTOCOL),
        "instantiatesUri": (_NO_VALUE, _PROTOCOL),
        "replaces": (_NO_VALUE, _REPLACING),
        "orderDetail": (_NO_VALUE, _ONE_DOSE),
        "quantityQuantity": (_NO_VALUE, _ONE_DOSE),
        "quantityRatio": (_NO_VALUE, _ONE_DOSE),
        "quantityRange": (_NO_VALUE, _ONE_DOSE),
        "occurrenceTiming": (_NO_VALUE, _DATE_ONLY),
        "asNeededBoolean": ((False,), _ONE_DOSE),
        "asNeededCodeableConcept": (_NO_VALUE, _ONE_DOSE),
        "bodySite": (_NO_VALUE, "the infusion route is the therapy's"),
        "patientInstruction": (_NO_VALUE, _FREE_TEXT),
    },
    "MedicationRequest": {
        "instantiatesCanonical": (_NO_VALUE, _PROTOCOL),
        "instantiatesUri": (_NO_VALUE, _PROTOCOL),
        "priorPrescription": (_NO_VALUE, _REPLACING),
        "medicationReference": (_NO_VALUE, "the therapy is read from medicationCodeableConcept"),
        "dispenseRequest": (_NO_VALUE, _ONE_DOSE),
        "substitution": (_NO_VALUE, "the therapy ordered is the one made; nothing substitutes"),
    },
    # Patient.active, deceased[x] and link are R4 modifiers: see MODIFIERS.
    "Patient": {},
    "Task": {
        "restriction": (_NO_VALUE, "only status, businessStatus, statusReason and input are read"),
    },
}

_NOTE = (
    "a note is commentary, and the canonical order has no place for free text, so it is kept "
    "only in the stored message"
)
_PRIORITY = (
    "the schedule of an autologous therapy is set by the manufacturer's slot, not by the "
    "request's priority, which reaches no one"
)
_DOSAGE = (
    "the dose of an autologous therapy is the one product made from the patient's own cells, "
    "so dosing text is no parameter the gateway can act on; it is kept only in the stored "
    "message"
)

#: R4 elements that real orders carry as commentary on the order rather than as its
#: parameters. The gateway does not read them either, but refusing them would refuse nearly
#: every real order, and ignoring them says nothing: they are accepted in every mode, with a
#: warning naming each where the answer has a place for one. Same shape as :data:`UNREAD`.
COMMENTARY: dict[str, dict[str, tuple[tuple[Any, ...], str]]] = {
    "ServiceRequest": {"priority": (_ROUTINE, _PRIORITY), "note": (_NO_VALUE, _NOTE)},
    "MedicationRequest": {
        "priority": (_ROUTINE, _PRIORITY),
        "note": (_NO_VALUE, _NOTE),
        "dosageInstruction": (_NO_VALUE, _DOSAGE),
    },
    "Patient": {},
    "Task": {"priority": (_ROUTINE, _PRIORITY), "note": (_NO_VALUE, _NOTE)},
}


_RULES = (
    "it names rules the resource was written under, which may change what it means, and "
    "this gateway knows none"
)
_NOT_TO_TREAT = "this is a request not to treat, and cannot be placed as an order"
_DECEASED = (
    "the patient is recorded as deceased; no therapy is ordered for them, and if the record "
    "is wrong, correct it in the EHR before ordering"
)

#: R4 modifier elements (isModifier: they change what the resource means) that the reader
#: does not otherwise act on: for each, the values that leave the meaning as the gateway
#: takes it, the issue code of the refusal, and why. FHIR: a system SHALL NOT ignore a
#: modifier it does not understand, so these are refused in every mode, never a warning.
#: (``status`` and ``intent`` of an order are read and held to ``active`` and an order
#: intent where the order is planned; ``modifierExtension`` is refused wherever it is.)
#: ``Patient.deceased[x]`` is a modifier in R4 too ("once a patient is marked as deceased,
#: the actions that are appropriate … may be significantly different").
MODIFIERS: dict[str, dict[str, tuple[tuple[Any, ...], str, str]]] = {
    "ServiceRequest": {
        "implicitRules": (_NO_VALUE, "not-supported", _RULES),
        "doNotPerform": ((False,), "business-rule", _NOT_TO_TREAT),
    },
    "MedicationRequest": {
        "implicitRules": (_NO_VALUE, "not-supported", _RULES),
        "doNotPerform": ((False,), "business-rule", _NOT_TO_TREAT),
    },
    "Patient": {
        "implicitRules": (_NO_VALUE, "not-supported", _RULES),
        "active": (
            (True,),
            "business-rule",
            "the patient's record is marked inactive (it may have been merged into another, "
            "or made in error); order on the patient's active record",
        ),
        "deceasedBoolean": ((False,), "business-rule", _DECEASED),
        "deceasedDateTime": (_NO_VALUE, "business-rule", _DECEASED),
        "link": (
            _NO_VALUE,
            "not-supported",
            "the record is linked to another, which may be the one to use (a merged or "
            "duplicate record), and this gateway does not follow links; order on the "
            "surviving record, sent without the link",
        ),
    },
    "Task": {"implicitRules": (_NO_VALUE, "not-supported", _RULES)},
}


def _names(resource_type: str) -> frozenset[str]:
    primitives = _BASE_PRIMITIVES + _PRIMITIVES[resource_type]
    return frozenset(
        (*_RESOURCE, *_DOMAIN_RESOURCE, *_ELEMENTS[resource_type], *(f"_{p}" for p in primitives))
    )


KNOWN: dict[str, frozenset[str]] = {kind: _names(kind) for kind in _ELEMENTS}
CHECKED_TYPES = frozenset(KNOWN)


def closest(name: str, resource_type: str) -> str | None:
    """The known name ``name`` most likely meant: the same but for case, else a near one."""
    known = KNOWN[resource_type]
    by_case = {item.lower(): item for item in known}
    if name.lower() in by_case:
        return by_case[name.lower()]
    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return found[0] if found else None


def refuse_unknown(element: Element, resource_type: str) -> None:
    """A top-level name that is not an R4 element of ``resource_type`` is refused."""
    known = KNOWN[resource_type]
    for name in element.data:
        if name in known:
            continue
        where = element.at(name)
        guess = closest(name, resource_type)
        hint = f" Did you mean '{guess}'?" if guess else ""
        raise FhirError(
            "structure",
            f"{where}: '{name}' is not an element of {resource_type} in FHIR R4, so nothing "
            f"it carries could be read.{hint}",
            where,
        )


#: R4's request-priority codes (a required binding).
PRIORITIES = ("routine", "urgent", "asap", "stat")


def refuse_malformed_commentary(element: Element) -> None:
    """Commentary is accepted with a warning, but only when it is what R4 says it is: a
    priority code, and notes as a list of Annotations with their text."""
    priority = element.data.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise FhirError(
            "code-invalid",
            f"{element.at('priority')} is {json.dumps(priority)}; R4 allows "
            f"{', '.join(PRIORITIES)}.",
            element.at("priority"),
        )
    note = element.data.get("note")
    if note is not None and not (
        isinstance(note, list)
        and all(isinstance(item, dict) and isinstance(item.get("text"), str) for item in note)
    ):
        raise FhirError(
            "structure",
            f"{element.at('note')} must be a list of Annotations, each with its text.",
            element.at("note"),
        )


def _present(element: Element, name: str, harmless: tuple[Any, ...]) -> bool:
    """Whether ``name`` carries a value other than the ones that say only what the gateway
    assumes anyway (``False`` is not ``0``: the type must match too)."""
    value = element.data.get(name)
    if value in (None, "", [], {}):
        return False
    return not any(value == item and type(value) is type(item) for item in harmless)


def modifier_extension(value: Any, path: str) -> str | None:
    """The path of the first ``modifierExtension`` anywhere in ``value``, if there is one."""
    if isinstance(value, dict):
        if value.get("modifierExtension"):
            return f"{path}.modifierExtension"
        for key, item in value.items():
            if isinstance(item, dict | list):
                found = modifier_extension(item, f"{path}.{key}")
                if found is not None:
                    return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                found = modifier_extension(item, f"{path}[{index}]")
                if found is not None:
                    return found
    return None


def refuse_modifiers(element: Element, resource_type: str) -> None:
    """Refuse, in any mode, a modifier of :data:`MODIFIERS` with a value other than the
    harmless ones, and a ``modifierExtension`` anywhere in the resource: each changes what
    the resource means, and FHIR forbids ignoring a modifier not understood."""
    issues = []
    for name, (harmless, code, why) in MODIFIERS.get(resource_type, {}).items():
        if not _present(element, name, harmless):
            continue
        where = element.at(name)
        value = element.data.get(name)
        # Only a flag is echoed: a date of death or a linked record stays out of the answer.
        shown = f"is {json.dumps(value)}" if isinstance(value, bool) else "is present"
        issues.append(
            Issue(
                code,
                f"{where} {shown}: a modifier element of {resource_type}, which changes what "
                f"the resource means, so it is never ignored or only warned of ({why}).",
                where,
            )
        )
    found = modifier_extension(element.data, element.path)
    if found is not None:
        issues.append(
            Issue(
                "not-supported",
                f"{found} is not understood here, and a modifier extension changes the meaning "
                "of its element; send the order without it or agree the extension with us.",
                found,
            )
        )
    if issues:
        raise _refusal(issues)


def unread(element: Element, resource_type: str, *, severity: str = "error") -> list[Issue]:
    """An issue for each R4 element present that changes what is asked for and that the
    gateway does not read."""
    return _present_issues(
        element,
        UNREAD[resource_type],
        severity,
        lambda where, why: (
            f"{where} is an element of {resource_type} that this gateway does "
            f"not read ({why}): it would not reach the order or the manufacturer."
        ),
    )


def commentary(element: Element, resource_type: str) -> list[Issue]:
    """A warning for each element of :data:`COMMENTARY` present: accepted, not carried."""
    return _present_issues(
        element,
        COMMENTARY[resource_type],
        "warning",
        lambda where, why: (
            f"{where} was accepted but is not carried ({why}): it does not "
            "reach the order's record or the manufacturer."
        ),
    )


def _present_issues(
    element: Element,
    table: Mapping[str, tuple[tuple[Any, ...], str]],
    severity: str,
    sentence: Callable[[str, str], str],
) -> list[Issue]:
    issues = []
    for name, (harmless, why) in table.items():
        if _present(element, name, harmless):
            where = element.at(name)
            issues.append(Issue("not-supported", sentence(where, why), where, severity=severity))
    return issues


def check(
    element: Element, resource_type: str, *, lenient: bool = False, may_be_lenient: bool = True
) -> list[Issue]:
    """Refuse unknown names; refuse unread elements, or with ``lenient`` return them as
    warnings for the answer; return a warning for each element of commentary, in any mode.
    ``may_be_lenient`` says whether the refusal may offer lenient handling: only a Bundle's
    answer has a place for a warning beside each entry."""
    if resource_type not in CHECKED_TYPES:
        return []
    refuse_unknown(element, resource_type)
    refuse_modifiers(element, resource_type)
    refuse_malformed_commentary(element)
    if lenient:
        return unread(element, resource_type, severity="warning") + commentary(
            element, resource_type
        )
    issues = unread(element, resource_type)
    if not issues:
        return commentary(element, resource_type)
    remedy = (
        " Send it without the element, or send the Bundle with 'Prefer: handling=lenient' to "
        "place the order anyway and be warned."
        if may_be_lenient
        else " Send it without the element."
    )
    raise _refusal(
        [Issue(issue.code, issue.diagnostics + remedy, issue.expression) for issue in issues]
    )


def _refusal(issues: list[Issue]) -> FhirError:
    """One refusal answered with every issue, the first setting its status."""
    error = FhirError(issues[0].code, issues[0].diagnostics, issues[0].expression)
    error.issues = issues
    return error
