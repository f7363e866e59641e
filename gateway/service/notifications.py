"""Which partners hear about an order change, and what they may see.

Every notification a manufacturer or courier receives carries the chain-of-identity
identifier and the pseudonym only. The hospital's own systems get the same minimal notice;
their adapters look up what else they are entitled to when they render the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.domain.lifecycle import Outcome
from gateway.domain.model import TherapyOrder


@dataclass(frozen=True)
class Notice:
    destination: str
    kind: str
    payload: dict[str, Any]


def partner_view(order: TherapyOrder) -> dict[str, Any]:
    """The minimum-necessary view of an order: no name, DOB or MRN ever."""
    return {
        "order_id": order.id,
        "coi": order.coi,
        "pseudonym": order.patient_pseudonym,
        "therapy": order.therapy.code,
        "site": order.site.id,
        "state": order.state.value,
        "status": order.status,
        "version": order.version,
        "external_ids": order.external_ids.model_dump(mode="json"),
    }


def notices_for(outcome: Outcome, event_name: str) -> list[Notice]:
    order = outcome.order
    payload = {
        **partner_view(order),
        "event": event_name,
        "outcome": outcome.kind,
        "previous_state": outcome.previous_state.value,
    }
    return [
        Notice(f"hospital:{order.site.id}", "order.status", payload),
        Notice(f"manufacturer:{order.therapy.manufacturer}", "order.status", payload),
    ]
