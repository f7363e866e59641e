"""Chain-of-identity verification: is this bag the right product for this order, here and now?

A verdict is green only when every check passes. The first failing check decides the red
reason, and the checks run in the order a pharmacist would want to hear about them:
identity first (wrong patient outranks everything), then the order's standing, then time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from gateway.domain.model import (
    Actor,
    CustodyAction,
    CustodyEvent,
    ScanVerdict,
    TherapyOrder,
    UnitKind,
)
from gateway.domain.rules import TherapyRules
from gateway.domain.states import OrderState


class Checkpoint(StrEnum):
    RECEIPT = "receipt"
    STORAGE = "storage"
    THAW = "thaw"
    BEDSIDE = "bedside"


#: The states in which a unit may be presented at each checkpoint.
EXPECTED_STATES: dict[Checkpoint, frozenset[OrderState]] = {
    Checkpoint.RECEIPT: frozenset({OrderState.SHIPPED_TO_SITE, OrderState.RECEIVED_AT_SITE}),
    Checkpoint.STORAGE: frozenset({OrderState.RECEIVED_AT_SITE, OrderState.STORED}),
    Checkpoint.THAW: frozenset({OrderState.STORED}),
    Checkpoint.BEDSIDE: frozenset({OrderState.THAWED}),
}


class ScannedUnit(BaseModel):
    """What a bag's label said, as read by the scanner."""

    model_config = ConfigDict(frozen=True)

    unit_id: str | None = None
    product_code: str | None = None
    coi: str | None = None
    # The product code's ``t`` digit: ``1`` is "for autologous use only".
    collection_type: str | None = None
    expires_at: AwareDatetime | None = None
    # The label printed a date only (``=>``): it expires at 23:59 that day, and it agrees
    # with the release record when the record's expiry falls on that day.
    expiry_date_only: bool = False


class ScannedWristband(BaseModel):
    model_config = ConfigDict(frozen=True)

    coi: str | None = None
    patient_id: str | None = None


class Red(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def verify(
    order: TherapyOrder,
    checkpoint: Checkpoint,
    unit: ScannedUnit,
    rules: TherapyRules,
    *,
    at: datetime,
    user: str,
    wristband: ScannedWristband | None = None,
    expected_patient_id: str | None = None,
    method: str | None = None,
) -> ScanVerdict:
    """Return a green or red verdict; never raises for a failed check."""
    try:
        _check(order, checkpoint, unit, rules, at, wristband, expected_patient_id)
    except Red as red:
        return ScanVerdict(
            at=at,
            checkpoint=checkpoint.value,
            user=user,
            unit_id=unit.unit_id,
            green=False,
            reason_code=red.code,
            reason=red.reason,
            method=method,
        )
    if checkpoint is Checkpoint.BEDSIDE and wristband is not None:
        method = "wristband"
    return ScanVerdict(
        at=at,
        checkpoint=checkpoint.value,
        user=user,
        unit_id=unit.unit_id,
        green=True,
        reason="All checks passed.",
        method=method,
    )


def _check(
    order: TherapyOrder,
    checkpoint: Checkpoint,
    scanned: ScannedUnit,
    rules: TherapyRules,
    at: datetime,
    wristband: ScannedWristband | None,
    expected_patient_id: str | None,
) -> None:
    if not scanned.unit_id:
        raise Red(
            "no_unit_id",
            "The scan has no unit identifier. Scan the bag's DataMatrix "
            "or the unit-number barcode.",
        )
    unit = order.unit(scanned.unit_id)
    if unit is None or unit.kind is not UnitKind.FINAL_PRODUCT:
        raise Red(
            "unknown_unit",
            f"Unit {scanned.unit_id} is not a product of this order "
            f"(CoI {order.coi}). Do not use it; quarantine the bag and call the "
            "cell-therapy lab.",
        )
    if scanned.coi is not None and scanned.coi != order.coi:
        raise Red(
            "coi_mismatch",
            f"The bag's chain-of-identity identifier {scanned.coi} does "
            f"not match this order's {order.coi}. Wrong patient's product: STOP.",
        )
    if checkpoint is Checkpoint.BEDSIDE:
        _check_wristband(order, wristband, expected_patient_id)
    if unit.collection_cycle != order.collection_cycle:
        raise Red(
            "superseded_unit",
            f"Unit {unit.unit_id} is from an earlier collection that was replaced. Do not use it.",
        )
    expected_product = unit.product_code or order.therapy.product_code
    if scanned.product_code and expected_product and scanned.product_code != expected_product:
        raise Red(
            "wrong_product",
            f"The label's product code {scanned.product_code} is not "
            f"the ordered {expected_product} ({order.therapy.name}).",
        )
    # "1" is what ProductCode.is_autologous tests for; the digit comes here as text because
    # the domain imports nothing from labeling.
    if rules.autologous and scanned.collection_type not in (None, "1"):
        raise Red(
            "wrong_product",
            f"The label's product code is marked collection type {scanned.collection_type}, "
            f"not 1 (for autologous use only), but {order.therapy.name} is made from the "
            "patient's own cells. Quarantine the bag and call the cell-therapy lab.",
        )
    if order.state is OrderState.CANCELLED:
        raise Red("order_cancelled", "This order was cancelled. Do not use the product.")
    if order.state is OrderState.INFUSED:
        raise Red(
            "already_infused",
            "This order's product was already infused on "
            f"{order.milestones.infused_at}. Do not use it again.",
        )
    if order.on_hold:
        hold = order.active_holds[0]
        raise Red(
            "on_hold",
            f"The order is on hold ({hold.reason.value}"
            + (f": {hold.detail}" if hold.detail else "")
            + "). Wait for its release.",
        )
    expiry = unit.expires_at or scanned.expires_at
    if expiry is not None and expiry <= at:
        raise Red(
            "expired",
            f"Unit {unit.unit_id} expired at {expiry.isoformat()}. Do not thaw or infuse it.",
        )
    if (
        scanned.expires_at is not None
        and unit.expires_at is not None
        and label_expiry_differs(scanned.expires_at, scanned.expiry_date_only, unit.expires_at)
    ):
        raise Red(
            "label_mismatch",
            "The expiry printed on the label differs from the "
            "manufacturer's release record. Quarantine the bag and call the lab.",
        )
    if order.state not in EXPECTED_STATES[checkpoint]:
        raise Red(
            "wrong_step",
            f"The order is {order.state.value}; a {checkpoint.value} scan is not expected now.",
        )
    if checkpoint is Checkpoint.BEDSIDE:
        thawed = order.milestones.thawed_at
        limit = timedelta(minutes=rules.thaw_to_infusion_minutes)
        if thawed is not None and at - thawed > limit:
            raise Red(
                "thawed_too_long",
                f"Thawed at {thawed.isoformat()}: more than "
                f"{rules.thaw_to_infusion_minutes:g} minutes ago. Do not infuse.",
            )


def label_expiry_differs(label: datetime, date_only: bool, recorded: datetime) -> bool:
    """Whether an expiry printed on a label disagrees with another moment: by day when the
    label printed a date only (in the label's zone), else by more than a minute."""
    if date_only:
        return recorded.astimezone(label.tzinfo).date() != label.date()
    return abs(label - recorded) > timedelta(minutes=1)


def _check_wristband(
    order: TherapyOrder, wristband: ScannedWristband | None, expected_patient_id: str | None
) -> None:
    if wristband is None:
        return
    if wristband.coi is not None and wristband.coi != order.coi:
        raise Red(
            "wrong_patient",
            "The wristband belongs to a different therapy episode "
            f"(CoI {wristband.coi}, product is for {order.coi}). Wrong patient: STOP.",
        )
    if (
        wristband.patient_id is not None
        and expected_patient_id is not None
        and wristband.patient_id != expected_patient_id
    ):
        raise Red(
            "wrong_patient",
            "The wristband's patient identifier does not match the "
            "patient this product was made for. Wrong patient: STOP.",
        )
    if wristband.coi is None and wristband.patient_id is None:
        raise Red(
            "unreadable_wristband",
            "The wristband scan carried neither a CoI nor a "
            "patient identifier. Scan the wristband's DataMatrix.",
        )
    if wristband.coi is None and expected_patient_id is None:
        # Only a patient id, and no patient record to hold it against: nothing was checked.
        raise Red(
            "unverifiable_wristband",
            "The wristband carries only a patient identifier and this order has no patient "
            "record to check it against. Do not infuse on this scan: a second person must "
            "confirm the patient's identity.",
        )


def record(
    order: TherapyOrder, verdict: ScanVerdict, *, where: str | None, role: str | None = None
) -> TherapyOrder:
    """The order with the verdict and its custody event added (a new version)."""
    updated = order.model_copy(deep=True)
    updated.scans.append(verdict)
    updated.custody_events.append(
        CustodyEvent(
            at=verdict.at,
            action=CustodyAction.VERIFICATION,
            who=Actor(person=verdict.user, role=role),
            where=where,
            unit_id=verdict.unit_id,
            verification="green" if verdict.green else "red",
            reason=verdict.reason if verdict.green else f"{verdict.reason_code}: {verdict.reason}",
            signature_meaning=f"{verdict.checkpoint} identity check",
        )
    )
    updated.version = order.version + 1
    updated.updated_at = max(order.updated_at, verdict.at)
    return updated
