"""The domain: the canonical order, its lifecycle and rules. Imports no framework or I/O."""

from gateway.domain.errors import DomainError, InvalidOrder, TransitionRefused
from gateway.domain.lifecycle import EventDetails, LifecycleEvent, Outcome, apply
from gateway.domain.model import TherapyOrder
from gateway.domain.patient import PatientIdentity, new_pseudonym
from gateway.domain.rules import TherapyRules
from gateway.domain.states import ON_HOLD, EventType, OrderState

__all__ = [
    "ON_HOLD",
    "DomainError",
    "EventDetails",
    "EventType",
    "InvalidOrder",
    "LifecycleEvent",
    "OrderState",
    "Outcome",
    "PatientIdentity",
    "TherapyOrder",
    "TherapyRules",
    "TransitionRefused",
    "apply",
    "new_pseudonym",
]
