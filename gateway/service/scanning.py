"""Scan checkpoints: read a label (typed or photographed), find its order, check chain of
identity and record the verdict — green or red — in the custody log.

Nothing here ever turns an unreadable or unexpected scan into green: an unknown unit, a
bag that belongs to another patient's order or a damaged read is red, with a reason the
person holding the bag can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time
from itertools import combinations
from zoneinfo import ZoneInfo

from gateway.domain.lifecycle import bedside_verified
from gateway.domain.model import ScanVerdict, TherapyOrder
from gateway.domain.verification import (
    Checkpoint,
    ScannedUnit,
    ScannedWristband,
    label_expiry_differs,
    record,
    verify,
)
from gateway.service.labels import in_site_zone, label_patient_id, site_zone
from gateway.service.orders import OrderService
from gateway.service.unit_of_work import UnitOfWork
from gateway.sites import SiteDirectory
from gateway.store import audit
from gateway.store.repository import ConcurrencyConflict
from labeling.coi import CoiIdentifier
from labeling.keyed import KEYED_NOTE
from labeling.scan import ScanRead, read_image, read_scan
from labeling.structures import (
    DonationId,
    ExpirationDate,
    ExpirationDateTime,
    FlexibleDateTime,
    PatientId,
    ProductCode,
)


@dataclass(frozen=True)
class ScanRequest:
    checkpoint: Checkpoint
    user: str
    unit_scan: str | None = None
    unit_image: bytes | None = None
    wristband_scan: str | None = None
    order_id: str | None = None
    location: str | None = None
    role: str | None = None
    site: str | None = None  # the station's site: bags for other sites are refused


@dataclass(frozen=True)
class ScanResult:
    green: bool
    checkpoint: str
    user: str
    reason: str
    reason_code: str | None = None
    order_id: str | None = None
    coi: str | None = None
    unit_id: str | None = None
    at: datetime | None = None
    bedside_complete: bool = False
    version: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class LabelExpiry:
    """An expiry a label carries: ``&>`` (date and time), ``=>`` (a date only: the product
    expires at 23:59 that day) or ``=(`` with TT 01. Wall-clock time in the site's zone,
    except a flexible date flagged UTC."""

    value: datetime
    date_only: bool = False
    utc: bool = False

    def at(self, zone: ZoneInfo) -> datetime:
        return self.value.replace(tzinfo=UTC) if self.utc else in_site_zone(self.value, zone)


def _as_expiry(structure: object) -> LabelExpiry | None:
    """The expiry a structure states, or None when it states none."""
    if isinstance(structure, ExpirationDateTime):
        return LabelExpiry(structure.value)
    if isinstance(structure, ExpirationDate):
        return LabelExpiry(datetime.combine(structure.value, _END_OF_DAY), True)
    if isinstance(structure, FlexibleDateTime) and structure.kind == structure.EXPIRY:
        return LabelExpiry(structure.value, utc=structure.zone == structure.UTC)
    return None


def label_expiries(read: ScanRead) -> list[LabelExpiry]:
    return [e for e in map(_as_expiry, read.structures) if e is not None]


_END_OF_DAY = time(23, 59)
KEYED_GREEN = (
    "The unit number, typed by hand, matches this order and passed its checks. The label "
    "itself was not read: check its product, expiry and CoI by eye against the order."
)


def one_expiry(expiries: list[LabelExpiry], zone: ZoneInfo) -> tuple[datetime, bool] | None:
    """The label's expiry (the most precise of them) and whether it is a date only; None
    when two of them disagree: a label cannot expire twice."""
    moments = [(expiry.at(zone), expiry.date_only) for expiry in expiries]
    for (first, first_day), (second, second_day) in combinations(moments, 2):
        if second_day:
            # A date only is compared by its day, so it takes the label's side of the check.
            first, first_day, second = second, second_day, first
        if label_expiry_differs(first, first_day, second):
            return None
    return min(moments, key=lambda moment: moment[1])


def scanned_unit(read: ScanRead) -> tuple[ScannedUnit, list[LabelExpiry]]:
    unit_id = next((s.identifier for s in read.structures if isinstance(s, DonationId)), None)
    code = next((s for s in read.structures if isinstance(s, ProductCode)), None)
    coi = next((s.value for s in read.structures if isinstance(s, CoiIdentifier)), None)
    unit = ScannedUnit(
        unit_id=unit_id,
        product_code=code.product if code else None,
        collection_type=code.collection_type if code else None,
        coi=coi,
    )
    return unit, label_expiries(read)


_KINDS = {
    DonationId: "unit numbers",
    CoiIdentifier: "CoI identifiers",
    PatientId: "patient identifiers",
    ProductCode: "product codes",
    FlexibleDateTime: "dates of one kind",
}


def conflict_in(read: ScanRead) -> str | None:
    """What a read carries twice with different values (two bags' labels read as one, or a
    stray structure after a label), named for the person scanning; None when nothing does.
    Such a read identifies nothing: taking the first of each would be a guess."""
    seen: dict[object, object] = {}
    for structure in read.structures:
        if _as_expiry(structure) is not None:
            continue  # the same moment may be written twice (local and UTC): one_expiry
        value = structure.identifier if isinstance(structure, DonationId) else structure
        # A flexible date says what it dates: an expiry and a collection date are two.
        kind = (
            (FlexibleDateTime, structure.kind)
            if isinstance(structure, FlexibleDateTime)
            else type(structure)
        )
        if seen.setdefault(kind, value) != value:
            return _KINDS.get(type(structure), f"{type(structure).__name__} values")
    return None


def scanned_wristband(read: ScanRead) -> ScannedWristband:
    coi = next((s.value for s in read.structures if isinstance(s, CoiIdentifier)), None)
    patient = next((s.value for s in read.structures if isinstance(s, PatientId)), None)
    return ScannedWristband(coi=coi, patient_id=patient)


def _not_a_wristband(band: ScanRead) -> tuple[str, str] | None:
    """Why a wristband scan cannot stand for the patient, or None. A bag label carries the
    order's CoI and patient id too, so a bag scanned twice would otherwise pass as bag and
    wristband, and one person would complete the bedside check alone."""
    if any(isinstance(s, DonationId | ProductCode) for s in band.structures):
        return (
            "wristband_is_a_bag",
            "The wristband scan is a bag label (it carries a unit number or product code). "
            "Scan the patient's wristband.",
        )
    conflict = conflict_in(band)
    if conflict is not None:
        return (
            "conflicting_scan",
            f"The wristband scan holds two different {conflict}. Scan the wristband alone.",
        )
    # One carrying neither a CoI nor a patient id is refused by verify() (unreadable_wristband).
    return None


class ScanStation:
    def __init__(self, orders: OrderService, sites: SiteDirectory) -> None:
        self.orders = orders
        self.sites = sites

    def scan(self, request: ScanRequest) -> ScanResult:
        at = self.orders.clock()
        band = read_scan(request.wristband_scan) if request.wristband_scan is not None else None
        named = self.orders.get(request.order_id) if request.order_id is not None else None
        if named is not None and request.site is not None and named.site.id != request.site:
            return self._red_without_order(
                replace(request, order_id=None),
                at,
                "wrong_site",
                "That order is not one of this site's. Check the patient and order.",
                (),
            )
        read = self._read_unit(request)
        if not read.accepted:
            return self._red_without_order(
                request,
                at,
                "unreadable_scan",
                read.reason or "The scan could not be read.",
                read.notes,
                patient=self._patient_at_hand(band, request),
            )
        conflict = conflict_in(read)
        if conflict is not None:
            return self._red_without_order(
                request,
                at,
                "conflicting_scan",
                f"That scan holds two different {conflict}: more than one label was read at "
                "once. Scan one bag's label on its own.",
                read.notes,
                patient=self._patient_at_hand(band, request),
            )
        unit, label_expiry = scanned_unit(read)
        if unit.unit_id is None:
            return self._red_without_order(
                request,
                at,
                "no_unit_id",
                "That scan has no unit number. Scan the bag's "
                "DataMatrix (or its unit-number barcode), not the wristband.",
                read.notes,
                patient=self._patient_at_hand(band, request),
            )
        owner = self.orders.find("unit", unit.unit_id)
        expected = named or self._order_of_wristband(band)
        if expected is not None and request.site is not None and expected.site.id != request.site:
            # The wristband names another site's patient: nothing is recorded on that
            # site's order, and nothing of it is told.
            return self._red_without_order(
                replace(request, order_id=None),
                at,
                "wrong_site",
                "The wristband is not for a patient of this site. Check the patient and the "
                "wristband; do not use the bag.",
                read.notes,
                unit.unit_id,
            )
        if expected is not None and owner is not None and owner.id != expected.id:
            # Another site's order is not named to this one (its CoI is that site's record).
            same_site = owner.site.id == expected.site.id
            other = f" (CoI {owner.coi})" if same_site else ""
            # The bag's own order: its product is out of its chain of custody, at another
            # patient's side, until someone finds it; its log must say where it was seen.
            # Not which patient's: this order's partners read its log.
            where = "for another patient" if same_site else "at another site"
            return self._record(
                expected,
                request,
                at,
                red=(
                    "wrong_order",
                    f"Unit {unit.unit_id} belongs to a different order{other}, not to this "
                    f"patient's (CoI {expected.coi}). Wrong patient's product: STOP and "
                    "quarantine the bag.",
                ),
                notes=read.notes,
                unit_id=unit.unit_id,
                also=(
                    owner,
                    (
                        "misdirected_unit",
                        f"Unit {unit.unit_id} of this order was scanned at "
                        f"{request.checkpoint.value} {where}. Find the bag, quarantine it and "
                        "call the cell-therapy lab.",
                    ),
                ),
            )
        order = expected or owner
        if order is not None and request.site is not None and order.site.id != request.site:
            return self._red_without_order(
                replace(request, order_id=None),
                at,
                "wrong_site",
                f"Unit {unit.unit_id} is not for this site. Do not use it; quarantine the bag "
                "and call the cell-therapy lab.",
                read.notes,
                unit.unit_id,
            )
        if order is None:
            return self._red_without_order(
                request,
                at,
                "unknown_unit",
                f"Unit {unit.unit_id} is not known to vein2vein. "
                "Do not use it; quarantine the bag and call the cell-therapy lab.",
                read.notes,
                unit.unit_id,
            )
        if label_expiry:
            expiry = one_expiry(label_expiry, site_zone(order, self.sites))
            if expiry is None:
                return self._record(
                    order,
                    request,
                    at,
                    red=(
                        "conflicting_scan",
                        "The label carries two different expiry dates. Do not use the bag; "
                        "quarantine it and call the cell-therapy lab.",
                    ),
                    notes=read.notes,
                    unit_id=unit.unit_id,
                )
            unit = unit.model_copy(update={"expires_at": expiry[0], "expiry_date_only": expiry[1]})
        wristband = None
        if band is not None:
            if not band.accepted:
                return self._record(
                    order,
                    request,
                    at,
                    red=("unreadable_wristband", band.reason or "The wristband could not be read."),
                    notes=band.notes,
                    unit_id=unit.unit_id,
                )
            refused = _not_a_wristband(band)
            if refused is not None:
                return self._record(
                    order, request, at, red=refused, notes=band.notes, unit_id=unit.unit_id
                )
            wristband = scanned_wristband(band)
        return self._verify_and_record(order, request, unit, wristband, at, read.notes)

    # --- internals ----------------------------------------------------------------------
    def _read_unit(self, request: ScanRequest) -> ScanRead:
        if request.unit_image is not None:
            return read_image(request.unit_image)
        return read_scan(request.unit_scan or "")

    def _order_of_wristband(self, band: ScanRead | None) -> TherapyOrder | None:
        """Without an order named by the station, the patient's wristband names it (at the
        bedside the wristband is scanned first, and the bag must match it)."""
        if band is None or not band.accepted:
            return None
        coi = scanned_wristband(band).coi
        return self.orders.find("coi", coi) if coi else None

    def _patient_at_hand(self, band: ScanRead | None, request: ScanRequest) -> TherapyOrder | None:
        """The order of the wristband scanned with a bag that could not be used: the red
        belongs in that patient's custody log. Not another site's patient's."""
        if band is None or not band.accepted or _not_a_wristband(band) is not None:
            return None  # a bag label or a read of two labels names no patient at hand
        order = self._order_of_wristband(band)
        if order is None or (request.site is not None and order.site.id != request.site):
            return None
        return order

    def _verify_and_record(
        self,
        order: TherapyOrder,
        request: ScanRequest,
        unit: ScannedUnit,
        wristband: ScannedWristband | None,
        at: datetime,
        notes: tuple[str, ...],
    ) -> ScanResult:
        rules = self.orders.rules.get(order.therapy.code)
        assert rules is not None
        expected_patient = None
        if wristband is not None and wristband.patient_id is not None:
            patient = self.orders.patient_of(order.id)
            expected_patient = label_patient_id(patient.mrn) if patient else None

        def decide(current: TherapyOrder) -> ScanVerdict:
            verdict = verify(
                current,
                request.checkpoint,
                unit,
                rules,
                at=at,
                user=request.user,
                wristband=wristband,
                expected_patient_id=expected_patient,
                method=None if wristband else "second_person",
            )
            if verdict.green and KEYED_NOTE in notes:
                # "All checks passed" would claim checks of a label that was never read.
                return verdict.model_copy(update={"reason": KEYED_GREEN})
            return verdict

        return self._save(order, request, decide, notes)

    def _record(
        self,
        order: TherapyOrder,
        request: ScanRequest,
        at: datetime,
        *,
        red: tuple[str, str],
        notes: tuple[str, ...] = (),
        unit_id: str | None = None,
        also: tuple[TherapyOrder, tuple[str, str]] | None = None,
    ) -> ScanResult:
        """Record a red on ``order`` and, with ``also``, another red on a second order in the
        same transaction (the two halves of one event are kept together or not at all)."""

        def verdict(reason: tuple[str, str]) -> ScanVerdict:
            return ScanVerdict(
                at=at,
                checkpoint=request.checkpoint.value,
                user=request.user,
                unit_id=unit_id,
                green=False,
                reason_code=reason[0],
                reason=reason[1],
            )

        first = verdict(red)
        second = [(also[0], verdict(also[1]))] if also is not None else []
        return self._save(order, request, lambda _current: first, notes, also=second)

    def _save(
        self,
        order: TherapyOrder,
        request: ScanRequest,
        decide: Callable[[TherapyOrder], ScanVerdict],
        notes: tuple[str, ...],
        *,
        also: list[tuple[TherapyOrder, ScanVerdict]] | None = None,
    ) -> ScanResult:
        for _attempt in range(5):
            with self.orders.uow() as uow:
                # Locked in one order of ids, so two scans that cross cannot deadlock.
                ids = sorted({order.id, *(other.id for other, _ in also or [])})
                locked = {oid: uow.orders.get(oid, for_update=True) for oid in ids}
                current = locked[order.id]
                assert current is not None
                # Judged on the order as it is now, under its lock: a hold or cancellation
                # since the order was first read must turn the verdict red.
                verdict = decide(current)
                try:
                    saved = [self._apply(uow, current, verdict, request, notes)]
                    for other, other_verdict in also or []:
                        latest = locked[other.id]
                        assert latest is not None
                        saved.append(self._apply(uow, latest, other_verdict, request, notes))
                except ConcurrencyConflict:
                    continue  # changed meanwhile: not committed, judged again
                uow.commit()
            for changed in saved:
                self.orders.publish(changed)
            updated = saved[0]
            return ScanResult(
                green=verdict.green,
                checkpoint=verdict.checkpoint,
                user=request.user,
                reason=verdict.reason or "",
                reason_code=verdict.reason_code,
                order_id=order.id,
                coi=order.coi,
                unit_id=verdict.unit_id,
                at=verdict.at,
                bedside_complete=verdict.checkpoint == "bedside" and bedside_verified(updated),
                version=updated.version,
                notes=notes,
            )
        raise RuntimeError(f"order {order.id} kept changing while recording a scan")

    @staticmethod
    def _apply(
        uow: UnitOfWork,
        current: TherapyOrder,
        verdict: ScanVerdict,
        request: ScanRequest,
        notes: tuple[str, ...],
    ) -> TherapyOrder:
        """Add the verdict to the order and audit it; raises :class:`ConcurrencyConflict`
        when the order changed under us."""
        updated = record(current, verdict, where=request.location, role=request.role)
        uow.orders.save(updated, expected_version=current.version)
        audit.append(
            uow.conn,
            at=verdict.at,
            actor=request.user,
            action="scan.verdict",
            order_id=current.id,
            payload={
                "checkpoint": verdict.checkpoint,
                "green": verdict.green,
                "reason_code": verdict.reason_code,
                "reason": verdict.reason,
                "unit_id": verdict.unit_id,
                "location": request.location,
                "method": verdict.method,
                "version": updated.version,
                # How the scan was read (a unit number keyed by hand, a prefix removed):
                # part of what the verdict rests on.
                **({"read": list(notes)} if notes else {}),
            },
        )
        return updated

    def _red_without_order(
        self,
        request: ScanRequest,
        at: datetime,
        code: str,
        reason: str,
        notes: tuple[str, ...],
        unit_id: str | None = None,
        *,
        patient: TherapyOrder | None = None,
    ) -> ScanResult:
        order = self.orders.get(request.order_id) if request.order_id is not None else patient
        if order is not None:
            return self._record(
                order,
                request,
                at,
                red=(code, reason),
                notes=notes,
                unit_id=unit_id,
            )
        with self.orders.uow() as uow:
            audit.append(
                uow.conn,
                at=at,
                actor=request.user,
                action="scan.verdict",
                order_id=None,
                payload={
                    "checkpoint": request.checkpoint.value,
                    "green": False,
                    "reason_code": code,
                    "reason": reason,
                    "unit_id": unit_id,
                    "location": request.location,
                },
            )
            uow.commit()
        return ScanResult(
            False,
            request.checkpoint.value,
            request.user,
            reason,
            code,
            unit_id=unit_id,
            at=at,
            notes=notes,
        )
