"""The canonical therapy order: the one shape every adapter translates to and from.

Patient identity (name, date of birth, MRN) is deliberately absent: it lives in
:mod:`gateway.domain.patient` and a separate PHI table, and the order carries only the
chain-of-identity identifier and a random pseudonym, which is all a manufacturer or
courier ever sees.
"""

from __future__ import annotations

import secrets
import time
import uuid
from enum import StrEnum
from typing import Any, Protocol, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.domain.states import ON_HOLD, TERMINAL_STATES, OrderState


def new_id(prefix: str) -> str:
    """Opaque, globally unique identifiers; the prefix tells a reader what it names."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def new_ordered_id(prefix: str) -> str:
    """A unique identifier that sorts after those made before it: the time in milliseconds,
    then 64 random bits (as UUIDv7 lays them out). For the keys of rows added on every
    inbound message: a random key dirties a random page of its index on each insert, an
    ordered one appends to the last."""
    return f"{prefix}-{time.time_ns() // 1_000_000:012x}{secrets.randbits(64):016x}"


class CanonicalModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        # Every lifecycle step works on a deep copy of the order. pydantic's compiled dump
        # and validate make one several times faster than copy.deepcopy walking the nested
        # models in Python (52 -> 21 us for a just-enrolled order, more as it grows); the
        # models hold values only, no validators with side effects and no shared parts.
        return type(self).model_validate(self.model_dump())


class Source(StrEnum):
    """Which side of the vein-to-vein triangle an event came from."""

    HOSPITAL = "hospital"
    MANUFACTURER = "manufacturer"
    COURIER = "courier"
    PHARMACY = "pharmacy"
    ERP = "erp"
    SYSTEM = "system"


class Therapy(CanonicalModel):
    code: str = Field(
        description="Therapy code; selects the rule file mappings/therapies/<code>.yaml"
    )
    name: str
    manufacturer: str = Field(description="Manufacturer partner id (mappings/manufacturers)")
    product_code: str | None = Field(default=None, description="Site-configured product code")


class Site(CanonicalModel):
    id: str = Field(description="Treatment site id, e.g. the hospital's partner id")
    name: str | None = None
    facility_code: str | None = Field(
        default=None, description="ISBT 128-style facility identification number (FIN)"
    )


class Clinician(CanonicalModel):
    id: str
    name: str | None = None


class ExternalIds(CanonicalModel):
    placer_number: str | None = Field(default=None, description="Hospital order number (ORC-2)")
    manufacturer_order_id: str | None = None
    erp_purchase_order: str | None = None
    courier_shipment_ids: list[str] = Field(default_factory=list)


class Milestones(CanonicalModel):
    enrolled_at: AwareDatetime | None = None
    slot_requested_at: AwareDatetime | None = None
    slot_confirmed_at: AwareDatetime | None = None
    slot_start: AwareDatetime | None = Field(default=None, description="Manufacturing slot start")
    original_apheresis_at: AwareDatetime | None = None
    apheresis_at: AwareDatetime | None = Field(default=None, description="Scheduled apheresis")
    collected_at: AwareDatetime | None = None
    shipped_to_mfg_at: AwareDatetime | None = None
    received_at_mfg_at: AwareDatetime | None = None
    manufacturing_started_at: AwareDatetime | None = None
    released_at: AwareDatetime | None = None
    oos_accepted_at: AwareDatetime | None = None
    mfg_failed_at: AwareDatetime | None = None
    shipped_to_site_at: AwareDatetime | None = None
    received_at_site_at: AwareDatetime | None = None
    stored_at: AwareDatetime | None = None
    thawed_at: AwareDatetime | None = None
    planned_infusion_at: AwareDatetime | None = None
    infused_at: AwareDatetime | None = None
    cancelled_at: AwareDatetime | None = None
    implied: list[str] = Field(
        default_factory=list,
        description="Milestones stamped because a later one arrived first; the real event "
        "replaces the stamp when it comes",
    )


class UnitKind(StrEnum):
    APHERESIS = "apheresis"
    FINAL_PRODUCT = "final_product"


class Unit(CanonicalModel):
    """One bag or cassette."""

    unit_id: str = Field(description="DIN-style unit identifier (13 characters, no flags)")
    kind: UnitKind
    product_code: str | None = None
    division: str | None = Field(default=None, description="Two-character product division")
    volume_ml: float | None = Field(default=None, ge=0)
    collected_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    storage: str | None = Field(default=None, description="Storage requirement, as labelled")
    collection_cycle: int = Field(default=1, ge=1)


class ShipmentLeg(StrEnum):
    TO_MANUFACTURER = "to_manufacturer"
    TO_SITE = "to_site"


class TemperatureReading(CanonicalModel):
    at: AwareDatetime
    celsius: float


class Excursion(CanonicalModel):
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    worst_celsius: float
    limit_celsius: float


class ShipmentMilestone(CanonicalModel):
    code: str = Field(description="Canonical courier milestone, e.g. picked_up, delivered")
    at: AwareDatetime
    location: str | None = None


#: What identifies a shipment's carrier and temperature record, as a partner reports it.
SHIPMENT_IDENTITY = ("courier", "tracking_number", "shipper_serial", "logger_id")


class ShipmentReport(Protocol):
    """What a partner may tell about a shipment (a Shipment itself, or a courier's update)."""

    courier: str | None
    tracking_number: str | None
    shipper_serial: str | None
    logger_id: str | None
    milestones: list[ShipmentMilestone]
    readings: list[TemperatureReading]


class Shipment(CanonicalModel):
    id: str = Field(default_factory=lambda: new_id("shp"))
    leg: ShipmentLeg
    courier: str | None = None
    tracking_number: str | None = None
    shipper_serial: str | None = Field(default=None, description="Dry shipper serial number")
    logger_id: str | None = Field(default=None, description="Temperature data logger id")
    milestones: list[ShipmentMilestone] = Field(default_factory=list)
    readings: list[TemperatureReading] = Field(default_factory=list)
    excursions: list[Excursion] = Field(default_factory=list)

    def merge(
        self, report: ShipmentReport
    ) -> tuple[list[ShipmentMilestone], list[TemperatureReading]]:
        """Take in what a report about this shipment adds and keep what it leaves out: an
        identity field (courier, tracking number, shipper serial, logger id) changes only to
        a value that was sent, and milestones and readings are kept once each, in time order
        (partners resend them freely, in any order). Returns the new milestones and
        readings."""
        for name in SHIPMENT_IDENTITY:
            value = getattr(report, name)
            if value and getattr(self, name) != value:
                setattr(self, name, value)
        seen = {(m.code, m.at) for m in self.milestones}
        added = list(
            {(m.code, m.at): m for m in report.milestones if (m.code, m.at) not in seen}.values()
        )
        self.milestones = sorted([*self.milestones, *added], key=lambda m: m.at)
        known_times = {reading.at for reading in self.readings}
        fresh = list({r.at: r for r in report.readings if r.at not in known_times}.values())
        self.readings = sorted([*self.readings, *fresh], key=lambda r: r.at)
        return added, fresh


class Actor(CanonicalModel):
    person: str | None = None
    role: str | None = None
    organisation: str | None = None


class CustodyAction(StrEnum):
    COLLECTION = "collection"
    HAND_OFF = "hand_off"
    RECEIPT = "receipt"
    STORAGE = "storage"
    THAW = "thaw"
    DISPENSE = "dispense"
    INFUSION = "infusion"
    VERIFICATION = "verification"


class CustodyEvent(CanonicalModel):
    id: str = Field(default_factory=lambda: new_id("cus"))
    at: AwareDatetime
    action: CustodyAction
    who: Actor
    where: str | None = None
    unit_id: str | None = None
    verification: str | None = Field(default=None, description="green, red or None")
    reason: str | None = None
    signature_meaning: str | None = Field(
        default=None, description="What an e-signature attests, e.g. 'verified identity'"
    )


class HoldReason(StrEnum):
    TEMPERATURE_EXCURSION = "temperature_excursion"
    IDENTITY_MISMATCH = "identity_mismatch"
    MISSING_DATA = "missing_data"
    QUALITY = "quality"
    OTHER = "other"


class Hold(CanonicalModel):
    id: str = Field(default_factory=lambda: new_id("hold"))
    reason: HoldReason
    detail: str | None = None
    placed_at: AwareDatetime
    placed_by: str | None = None
    released_at: AwareDatetime | None = None
    released_by: str | None = None
    resolution: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


class ScanVerdict(CanonicalModel):
    """The outcome of one chain-of-identity check at a scan checkpoint."""

    id: str = Field(default_factory=lambda: new_id("scan"))
    at: AwareDatetime
    checkpoint: str = Field(description="receipt, storage, thaw, bedside")
    user: str
    unit_id: str | None = None
    green: bool
    reason_code: str | None = None
    reason: str | None = None
    method: str | None = Field(default=None, description="second_person or wristband")


class TherapyOrder(CanonicalModel):
    """The canonical cell-therapy order aggregate."""

    id: str = Field(default_factory=lambda: new_id("ord"))
    coi: str | None = Field(
        default=None,
        description="Chain-of-identity identifier (ISBT 128 ST-028 style); assigned at enrolment",
    )
    patient_pseudonym: str = Field(description="Random pseudonym; never derived from the MRN")
    therapy: Therapy
    site: Site
    clinician: Clinician | None = None
    external_ids: ExternalIds = Field(default_factory=ExternalIds)
    state: OrderState = OrderState.REFERRED
    milestones: Milestones = Field(default_factory=Milestones)
    collection_cycle: int = Field(default=1, ge=1, description="1 + number of re-collections")
    reschedule_count: int = Field(default=0, ge=0)
    oos_accepted_by: str | None = None
    cancellation_reason: str | None = None
    units: list[Unit] = Field(default_factory=list)
    shipments: list[Shipment] = Field(default_factory=list)
    custody_events: list[CustodyEvent] = Field(default_factory=list)
    scans: list[ScanVerdict] = Field(default_factory=list)
    holds: list[Hold] = Field(default_factory=list)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int = Field(default=1, ge=1, description="Optimistic concurrency version")

    @property
    def active_holds(self) -> list[Hold]:
        return [hold for hold in self.holds if hold.active]

    @property
    def on_hold(self) -> bool:
        return bool(self.active_holds)

    @property
    def status(self) -> str:
        """What a person should be told: ON_HOLD overlays the lifecycle state."""
        if self.on_hold and self.state not in TERMINAL_STATES:
            return ON_HOLD
        return self.state.value

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def unit(self, unit_id: str) -> Unit | None:
        return next((unit for unit in self.units if unit.unit_id == unit_id), None)

    def final_products(self) -> list[Unit]:
        return [unit for unit in self.units if unit.kind is UnitKind.FINAL_PRODUCT]

    def shipment(self, leg: ShipmentLeg) -> Shipment | None:
        """The latest shipment on a leg (re-collection makes a new one)."""
        matching = [shipment for shipment in self.shipments if shipment.leg is leg]
        return matching[-1] if matching else None
