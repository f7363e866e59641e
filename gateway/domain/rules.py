"""Per-therapy rules. The values live in ``mappings/therapies/*.yaml``; this is their shape.

Rules are data because every manufacturer's label and contract differ: one allows
cancellation until shipment to manufacturing, another only until 72 hours before apheresis.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain.states import OrderState


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CancellationRules(_Rules):
    hospital_cutoff_state: OrderState = Field(
        description="From this state on, the hospital can no longer cancel on its own"
    )
    hours_before_apheresis: float = Field(
        ge=0, description="The hospital cannot cancel within this many hours of apheresis"
    )


class RescheduleRules(_Rules):
    max_reschedules: int = Field(ge=0)
    min_notice_hours: float = Field(ge=0, description="Notice needed before current apheresis")
    max_shift_days: float = Field(ge=0, description="Furthest a date may move from the original")


class StorageRules(_Rules):
    max_celsius: float = Field(description="Warmest allowed storage/transport temperature")
    excursion_minutes: float = Field(
        ge=0, description="How long above max_celsius before it is an excursion"
    )


class TherapyRules(_Rules):
    code: str
    name: str
    manufacturer: str
    product_code: str | None = None
    cancellation: CancellationRules
    reschedule: RescheduleRules
    thaw_to_infusion_minutes: float = Field(gt=0)
    storage: StorageRules
    shelf_life_days: float = Field(gt=0, description="Frozen shelf life from release")
    max_collections: int = Field(default=2, ge=1)
    require_bedside_verification: bool = True
    require_oos_acceptance: bool = True
    autologous: bool = Field(
        default=True,
        description="The product is the patient's own cells: a bag whose product code is "
        "not marked collection type 1 (for autologous use only) is refused at every scan",
    )
