"""Canonical commands: what every adapter turns a partner's message into."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.model import Actor, Clinician, Site
from gateway.domain.patient import PatientIdentity


class CreateOrder(BaseModel):
    """A hospital's order for a patient-specific therapy (the referral)."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientIdentity
    therapy_code: str = Field(description="A code from mappings/therapies")
    site: Site
    clinician: Clinician | None = None
    placer_number: str | None = Field(default=None, description="Hospital order number")
    erp_purchase_order: str | None = None
    planned_infusion_at: AwareDatetime | None = None
    actor: Actor = Field(default_factory=Actor)


class ApplyEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str
    event: LifecycleEvent
    expected_version: int | None = None
