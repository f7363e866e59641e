"""What needs a person's attention, derived from the order itself.

Alerts are never stored as facts: they are a reading of the canonical order (and of the
outbox's dead letters) at a moment in time, so they cannot drift from the data they describe.
Only what people *did* about an alert (acknowledged it, resolved it) is stored, under the
alert's key. A key names the situation, not the moment — the same hold keeps the same key
however often it is derived — and a new situation (another excursion, a re-thaw) gets a new
key, so an old acknowledgement never silences a new problem.

Everything here is pure: order, rules and "now" in, alerts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.domain.model import HoldReason, ShipmentLeg, TherapyOrder
from gateway.domain.rules import TherapyRules
from gateway.domain.states import JOURNEY, OrderState, journey_rank


class AlertKind(StrEnum):
    TEMPERATURE_EXCURSION = "temperature_excursion"
    SLOT_AT_RISK = "slot_at_risk"
    MISSING_DATA = "missing_data"
    THAW_WINDOW = "thaw_window"
    DEAD_LETTER = "dead_letter"
    HOLD = "hold"
    IDENTITY_ALARM = "identity_alarm"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1}


@dataclass(frozen=True)
class Alert:
    key: str
    kind: AlertKind
    severity: Severity
    title: str
    detail: str
    since: datetime
    order_id: str | None = None
    due: datetime | None = None


@dataclass(frozen=True)
class AlertPolicy:
    """Thresholds that are operating practice rather than contract terms.

    Contract terms (the thaw-to-infusion limit, reschedule notice) come from the therapy's
    rule file; these only decide how early the tower starts warning.
    """

    slot_confirmation_lead: timedelta = timedelta(days=14)
    slot_request_stale: timedelta = timedelta(hours=72)
    infusion_lead: timedelta = timedelta(days=35)
    thaw_warning_fraction: float = 0.5


DEFAULT_POLICY = AlertPolicy()


@dataclass(frozen=True)
class DeadLetter:
    """An outbound message the relay gave up on; someone must resend or handle it by hand."""

    id: int
    destination: str
    kind: str
    order_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime


#: States in which an order can raise an alert without being on hold or carrying an excursion.
#: The tower asks the database only for such orders; a test walks every other state to check
#: that this list and the rules below agree.
ALERTING_STATES: frozenset[OrderState] = frozenset(
    {
        OrderState.ENROLLED,
        OrderState.SLOT_REQUESTED,
        OrderState.SLOT_CONFIRMED,
        OrderState.SHIPPED_TO_MFG,
        OrderState.RELEASED,
        OrderState.RELEASED_OOS,
        OrderState.SHIPPED_TO_SITE,
        OrderState.RECEIVED_AT_SITE,
        OrderState.STORED,
        OrderState.THAWED,
    }
)


def order_alerts(
    order: TherapyOrder,
    rules: TherapyRules | None,
    now: datetime,
    policy: AlertPolicy = DEFAULT_POLICY,
) -> list[Alert]:
    """Every alert the order raises now, most urgent first. Finished orders raise none."""
    if order.is_terminal:
        return []
    found = [
        *_identity_alarms(order),
        *_hold_alerts(order),
        *_unheld_excursions(order),
        *_missing_data(order),
    ]
    if rules is not None:
        found.extend(_slot_at_risk(order, rules, now, policy))
        found.extend(_thaw_window(order, rules, now, policy))
    return sort_alerts(found)


def dead_letter_alert(item: DeadLetter) -> Alert:
    # A partner's error text is theirs: it may be empty or only whitespace.
    lines = (item.last_error or "").strip().splitlines()
    error = lines[0][:200] if lines else "no error recorded"
    return Alert(
        key=f"dead_letter:{item.id}",
        kind=AlertKind.DEAD_LETTER,
        severity=Severity.CRITICAL if item.order_id else Severity.WARNING,
        title=f"Message to {item.destination} was not delivered",
        detail=f"{item.kind} gave up after {item.attempts} attempt(s): {error}",
        since=item.created_at,
        order_id=item.order_id,
    )


def sort_alerts(alerts: list[Alert]) -> list[Alert]:
    """Critical before warning; within a severity, the most pressing deadline, then the oldest."""
    return sorted(
        alerts,
        key=lambda alert: (
            SEVERITY_RANK[alert.severity],
            alert.due is None,
            alert.due or alert.since,
            alert.since,
            alert.key,
        ),
    )


#: Red scans that mean a bag and a patient or order were brought together wrongly: a near
#: miss someone must look into, not only the person at the scanner.
IDENTITY_ALARMS: frozenset[str] = frozenset(
    {
        "wrong_order",
        "misdirected_unit",
        "wrong_patient",
        "coi_mismatch",
        "label_mismatch",
        "wrong_product",
        "superseded_unit",
    }
)


def _identity_alarms(order: TherapyOrder) -> list[Alert]:
    return [
        Alert(
            key=f"{AlertKind.IDENTITY_ALARM.value}:{order.id}:{scan.id}",
            kind=AlertKind.IDENTITY_ALARM,
            severity=Severity.CRITICAL,
            title=f"Chain-of-identity alarm at {scan.checkpoint}",
            detail=(scan.reason or scan.reason_code or "")
            + f" (scanned by {scan.user}"
            + (f", unit {scan.unit_id})" if scan.unit_id else ")"),
            since=scan.at,
            order_id=order.id,
        )
        for scan in order.scans
        if not scan.green and scan.reason_code in IDENTITY_ALARMS
    ]


def _hold_alerts(order: TherapyOrder) -> list[Alert]:
    alerts = []
    for hold in order.active_holds:
        if hold.reason is HoldReason.TEMPERATURE_EXCURSION:
            kind, title = AlertKind.TEMPERATURE_EXCURSION, "On hold: temperature excursion"
        elif hold.reason is HoldReason.MISSING_DATA:
            kind, title = AlertKind.MISSING_DATA, "On hold: missing data"
        else:
            kind = AlertKind.HOLD
            title = f"On hold: {hold.reason.value.replace('_', ' ')}"
        alerts.append(
            Alert(
                key=f"{kind.value}:{order.id}:{hold.id}",
                kind=kind,
                severity=Severity.CRITICAL,
                title=title,
                detail=hold.detail or "A hold blocks the next step until someone releases it.",
                since=hold.placed_at,
                order_id=order.id,
            )
        )
    return alerts


def _unheld_excursions(order: TherapyOrder) -> list[Alert]:
    """An excursion nobody has put a hold on yet: the product may be unusable."""
    if any(hold.reason is HoldReason.TEMPERATURE_EXCURSION for hold in order.holds):
        return []  # a hold (active or released with a resolution) means it was dealt with
    alerts = []
    for shipment in order.shipments:
        for excursion in shipment.excursions:
            leg = "to manufacturer" if shipment.leg is ShipmentLeg.TO_MANUFACTURER else "to site"
            alerts.append(
                Alert(
                    key=f"temperature_excursion:{order.id}:{shipment.id}:"
                    f"{excursion.started_at.isoformat()}",
                    kind=AlertKind.TEMPERATURE_EXCURSION,
                    severity=Severity.CRITICAL,
                    title=f"Temperature excursion in transit {leg}",
                    detail=f"{excursion.worst_celsius:g} °C against a limit of "
                    f"{excursion.limit_celsius:g} °C"
                    + ("" if excursion.ended_at else ", still out of range")
                    + f" (shipment {shipment.tracking_number or shipment.id}); no hold placed.",
                    since=excursion.started_at,
                    order_id=order.id,
                )
            )
    return alerts


def _missing_data(order: TherapyOrder) -> list[Alert]:
    """Facts the next hand-off depends on that no partner has sent yet."""
    gaps: list[tuple[str, str, datetime]] = []
    rank = journey_rank(order.state)
    m = order.milestones
    for leg, shipped_state, shipped_at in (
        (ShipmentLeg.TO_MANUFACTURER, OrderState.SHIPPED_TO_MFG, m.shipped_to_mfg_at),
        (ShipmentLeg.TO_SITE, OrderState.SHIPPED_TO_SITE, m.shipped_to_site_at),
    ):
        if order.state is not shipped_state:
            continue
        since = shipped_at or order.updated_at
        shipment = order.shipment(leg)
        if shipment is None or not shipment.tracking_number:
            gaps.append((f"tracking:{leg.value}", "No courier tracking number", since))
        elif not shipment.logger_id and not shipment.readings:
            gaps.append((f"logger:{leg.value}", "No temperature logger on the shipment", since))
    if rank >= journey_rank(OrderState.RELEASED) and order.state is not OrderState.MFG_FAILED:
        products = order.final_products()
        if not products:
            gaps.append(
                (
                    "final_product",
                    "No final product unit recorded",
                    m.released_at or order.updated_at,
                )
            )
        elif any(unit.expires_at is None for unit in products):
            gaps.append(
                ("expiry", "Final product has no expiry date", m.released_at or order.updated_at)
            )
    return [
        Alert(
            key=f"missing_data:{order.id}:{name}",
            kind=AlertKind.MISSING_DATA,
            severity=Severity.WARNING,
            title=f"Missing data: {text.lower()}",
            detail=f"{text} while the order is {order.state.value}.",
            since=since,
            order_id=order.id,
        )
        for name, text, since in gaps
    ]


def _slot_at_risk(
    order: TherapyOrder, rules: TherapyRules, now: datetime, policy: AlertPolicy
) -> list[Alert]:
    m = order.milestones
    key = f"slot_at_risk:{order.id}:{order.collection_cycle}"
    if order.state in (OrderState.ENROLLED, OrderState.SLOT_REQUESTED):
        if m.apheresis_at is not None and m.apheresis_at - now <= policy.slot_confirmation_lead:
            return [
                Alert(
                    key=key,
                    kind=AlertKind.SLOT_AT_RISK,
                    severity=Severity.CRITICAL
                    if m.apheresis_at - now <= timedelta(hours=rules.reschedule.min_notice_hours)
                    else Severity.WARNING,
                    title="Apheresis soon but no manufacturing slot confirmed",
                    detail=f"Apheresis {_when(m.apheresis_at, now)}; {rules.manufacturer} has "
                    "not confirmed a slot.",
                    since=m.slot_requested_at or order.updated_at,
                    order_id=order.id,
                    due=m.apheresis_at,
                )
            ]
        if (
            m.planned_infusion_at is not None
            and m.planned_infusion_at - now <= policy.infusion_lead
        ):
            return [
                Alert(
                    key=key,
                    kind=AlertKind.SLOT_AT_RISK,
                    severity=Severity.WARNING,
                    title="Planned infusion is near but no slot is confirmed",
                    detail=f"Infusion planned {_when(m.planned_infusion_at, now)}; no "
                    "manufacturing slot yet.",
                    since=m.slot_requested_at or order.updated_at,
                    order_id=order.id,
                    due=m.planned_infusion_at,
                )
            ]
        if (
            order.state is OrderState.SLOT_REQUESTED
            and m.slot_requested_at is not None
            and now - m.slot_requested_at >= policy.slot_request_stale
        ):
            return [
                Alert(
                    key=key,
                    kind=AlertKind.SLOT_AT_RISK,
                    severity=Severity.WARNING,
                    title="Slot request unanswered",
                    detail=f"Requested {_when(m.slot_requested_at, now)}; {rules.manufacturer} "
                    "has not confirmed a slot.",
                    since=m.slot_requested_at,
                    order_id=order.id,
                )
            ]
    if order.state is OrderState.SLOT_CONFIRMED and m.apheresis_at is not None:
        notice = timedelta(hours=rules.reschedule.min_notice_hours)
        if m.apheresis_at - now <= notice:
            return [
                Alert(
                    key=key,
                    kind=AlertKind.SLOT_AT_RISK,
                    severity=Severity.CRITICAL,
                    title="Slot confirmed but apheresis not booked at the site",
                    detail=f"Apheresis {_when(m.apheresis_at, now)}; the "
                    f"{rules.reschedule.min_notice_hours:g} h reschedule notice has run out.",
                    since=m.slot_confirmed_at or order.updated_at,
                    order_id=order.id,
                    due=m.apheresis_at,
                )
            ]
    return []


def _thaw_window(
    order: TherapyOrder, rules: TherapyRules, now: datetime, policy: AlertPolicy
) -> list[Alert]:
    thawed_at = order.milestones.thawed_at
    if order.state is not OrderState.THAWED or thawed_at is None:
        return []
    window = timedelta(minutes=rules.thaw_to_infusion_minutes)
    deadline = thawed_at + window
    left = deadline - now
    if left > window * (1 - policy.thaw_warning_fraction):
        return []
    minutes = int(left.total_seconds() // 60)
    return [
        Alert(
            key=f"thaw_window:{order.id}:{thawed_at.isoformat()}",
            kind=AlertKind.THAW_WINDOW,
            severity=Severity.CRITICAL if left <= window / 4 else Severity.WARNING,
            title="Thaw window expired" if minutes < 0 else f"Thaw window: {minutes} min left",
            detail=f"{rules.name} must be infused within {rules.thaw_to_infusion_minutes:g} min "
            f"of thaw (by {deadline.strftime('%H:%M')} UTC).",
            since=thawed_at,
            order_id=order.id,
            due=deadline,
        )
    ]


def _when(at: datetime, now: datetime) -> str:
    delta = at - now
    hours = abs(delta.total_seconds()) / 3600
    amount = f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"
    return f"in {amount}" if delta.total_seconds() >= 0 else f"{amount} ago"


# --- time in state ----------------------------------------------------------------------------

#: When each state begins, by the milestone the lifecycle stamps on entering it.
#: APHERESIS_SCHEDULED stamps none, so it shares the slot-confirmed span.
ENTRY_MILESTONES: tuple[tuple[OrderState, str], ...] = (
    (OrderState.ENROLLED, "enrolled_at"),
    (OrderState.SLOT_REQUESTED, "slot_requested_at"),
    (OrderState.SLOT_CONFIRMED, "slot_confirmed_at"),
    (OrderState.COLLECTED, "collected_at"),
    (OrderState.SHIPPED_TO_MFG, "shipped_to_mfg_at"),
    (OrderState.RECEIVED_AT_MFG, "received_at_mfg_at"),
    (OrderState.MANUFACTURING, "manufacturing_started_at"),
    (OrderState.RELEASED, "released_at"),
    (OrderState.MFG_FAILED, "mfg_failed_at"),
    (OrderState.SHIPPED_TO_SITE, "shipped_to_site_at"),
    (OrderState.RECEIVED_AT_SITE, "received_at_site_at"),
    (OrderState.STORED, "stored_at"),
    (OrderState.THAWED, "thawed_at"),
    (OrderState.INFUSED, "infused_at"),
    (OrderState.CANCELLED, "cancelled_at"),
)

#: Service targets for states no therapy rule bounds: how long a coordinator expects a step
#: to take before chasing it. Therapy rules override these where they define a limit.
SERVICE_TARGETS: dict[OrderState, timedelta] = {
    OrderState.REFERRED: timedelta(days=3),
    OrderState.ENROLLED: timedelta(days=2),
    OrderState.SLOT_REQUESTED: timedelta(days=3),
    OrderState.COLLECTED: timedelta(hours=24),
    OrderState.SHIPPED_TO_MFG: timedelta(hours=48),
    OrderState.RECEIVED_AT_MFG: timedelta(days=2),
    OrderState.MANUFACTURING: timedelta(days=21),
    OrderState.RELEASED: timedelta(days=5),
    OrderState.SHIPPED_TO_SITE: timedelta(hours=72),
    OrderState.RECEIVED_AT_SITE: timedelta(hours=24),
}


@dataclass(frozen=True)
class StateSpan:
    state: OrderState
    entered_at: datetime
    left_at: datetime | None
    duration: timedelta
    target: timedelta | None
    target_source: str | None  # "therapy" (rule file), "schedule" (a booked date) or "service"

    @property
    def over_target(self) -> bool:
        return self.target is not None and self.duration > self.target

    @property
    def current(self) -> bool:
        return self.left_at is None


def time_in_state(
    order: TherapyOrder, rules: TherapyRules | None, now: datetime
) -> list[StateSpan]:
    """The order's path so far as spans of time, each against its target where there is one.

    Re-collection clears the manufacturing-side milestones, so the spans show the current
    collection cycle; the custody log keeps the earlier one.
    """
    entries: list[tuple[OrderState, datetime]] = [(OrderState.REFERRED, order.created_at)]
    for state, name in ENTRY_MILESTONES:
        at = getattr(order.milestones, name)
        if at is not None:
            entries.append((state, at))
    if order.state is OrderState.RELEASED_OOS:
        entries = [
            (OrderState.RELEASED_OOS if s is OrderState.RELEASED else s, at) for s, at in entries
        ]
    entries.sort(key=lambda entry: entry[1])
    spans = []
    for index, (state, entered) in enumerate(entries):
        following = entries[index + 1][1] if index + 1 < len(entries) else None
        terminal = state in (OrderState.INFUSED, OrderState.CANCELLED)
        end = entered if terminal else (following or now)
        target, source = _target(order, rules, state, entered)
        spans.append(
            StateSpan(
                state=state,
                entered_at=entered,
                left_at=entered if terminal else following,
                duration=max(end - entered, timedelta(0)),
                target=target,
                target_source=source,
            )
        )
    return spans


def _target(
    order: TherapyOrder, rules: TherapyRules | None, state: OrderState, entered: datetime
) -> tuple[timedelta | None, str | None]:
    if rules is not None:
        if state is OrderState.THAWED:
            return timedelta(minutes=rules.thaw_to_infusion_minutes), "therapy"
        if state is OrderState.STORED:
            expiries = [u.expires_at for u in order.final_products() if u.expires_at]
            if expiries:
                return max(min(expiries) - entered, timedelta(0)), "therapy"
            return timedelta(days=rules.shelf_life_days), "therapy"
    if state is OrderState.SLOT_CONFIRMED and order.milestones.apheresis_at is not None:
        return max(order.milestones.apheresis_at - entered, timedelta(0)), "schedule"
    target = SERVICE_TARGETS.get(state)
    return (target, "service") if target is not None else (None, None)


#: Funnel columns, in journey order, with the branches where people look for them.
FUNNEL_STATES: tuple[OrderState, ...] = (
    *JOURNEY[: JOURNEY.index(OrderState.RELEASED) + 1],
    OrderState.RELEASED_OOS,
    OrderState.MFG_FAILED,
    *JOURNEY[JOURNEY.index(OrderState.RELEASED) + 1 :],
    OrderState.CANCELLED,
)
