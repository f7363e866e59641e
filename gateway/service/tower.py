"""The control tower's use cases: one screen across every manufacturer, courier and order.

Reads go through :mod:`gateway.store.tower` (SQL counts and keyset pages); alerts are derived
by :mod:`gateway.domain.alerts` and joined with what people did about them. Acknowledging or
resolving an alert is a command like any other: the alert row and its audit entry commit
together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from gateway.domain.alerts import (
    ALERTING_STATES,
    FUNNEL_STATES,
    Alert,
    AlertKind,
    StateSpan,
    dead_letter_alert,
    order_alerts,
    sort_alerts,
    time_in_state,
)
from gateway.domain.model import HoldReason, TherapyOrder
from gateway.domain.patient import PatientIdentity
from gateway.domain.rules import TherapyRules
from gateway.domain.states import ON_HOLD, OrderState
from gateway.service.errors import NotFound, ServiceError
from gateway.service.orders import OrderService
from gateway.store import audit
from gateway.store import tower as store
from gateway.store.tower import AlertState, Scope

Action = Literal["acknowledge", "resolve"]


class NotAllowed(ServiceError):
    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class Viewer:
    """Who is looking, reduced to what the tower needs to know about them."""

    id: str
    scope: Scope
    may_see: Callable[[TherapyOrder], bool]
    sees_phi: Callable[[TherapyOrder], bool]
    may_act: bool


@dataclass(frozen=True)
class OrderSummary:
    order: TherapyOrder
    patient_name: str | None
    alerts: list[Alert]
    current: StateSpan | None


@dataclass(frozen=True)
class Page:
    items: list[OrderSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class Funnel:
    states: list[tuple[str, int]]  # lifecycle state (and ON_HOLD) → orders
    by_therapy: dict[str, dict[str, int]]
    total: int
    on_hold: int


@dataclass(frozen=True)
class ListedAlert:
    alert: Alert
    state: AlertState | None
    coi: str | None = None
    pseudonym: str | None = None
    therapy: str | None = None


@dataclass(frozen=True)
class AlertList:
    items: list[ListedAlert]
    total: int
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # milestone, shipment, excursion, custody, scan, hold, hold_released
    label: str
    detail: str = ""
    tone: str = ""  # "", "good", "bad"


@dataclass(frozen=True)
class OrderDetail:
    order: TherapyOrder
    patient: PatientIdentity | None
    rules: TherapyRules | None
    alerts: list[ListedAlert]
    spans: list[StateSpan]
    timeline: list[TimelineEntry]


#: A viewer who keeps seeing one patient's name (the tower re-reads an order's row on every
#: change) is audited once per this window, not once per refresh.
PHI_READ_WINDOW = timedelta(minutes=15)


class ControlTower:
    def __init__(self, orders: OrderService) -> None:
        self.orders = orders
        self._phi_seen: dict[tuple[str, str, str], datetime] = {}
        self._phi_lock = threading.Lock()

    def _audit_phi(self, viewer: Viewer, order_ids: list[str], what: str) -> None:
        """phi.read for each order whose patient identity this view showed, unless the same
        viewer saw it the same way within PHI_READ_WINDOW."""
        now = self.now
        with self._phi_lock:
            due = []
            for order_id in order_ids:
                key = (viewer.id, order_id, what)
                seen = self._phi_seen.get(key)
                if seen is None or now - seen >= PHI_READ_WINDOW:
                    self._phi_seen[key] = now
                    due.append(order_id)
            if len(self._phi_seen) > 50_000:
                self._phi_seen = {
                    key: at for key, at in self._phi_seen.items() if now - at < PHI_READ_WINDOW
                }
        if due:
            self.orders.record_access_many(due, actor=viewer.id, what=what)

    @property
    def now(self) -> datetime:
        return self.orders.clock()

    def _rules(self, order: TherapyOrder) -> TherapyRules | None:
        return self.orders.rules.get(order.therapy.code)

    # --- lists and counts -----------------------------------------------------------------
    def page(
        self,
        viewer: Viewer,
        *,
        state: str | None = None,
        therapy: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        with self.orders.uow(readonly=True) as uow:
            rows, next_cursor = store.order_rows(
                uow.conn,
                viewer.scope,
                state=state,
                therapy_code=therapy,
                limit=limit,
                cursor=cursor,
            )
        items = [item for item in (self._summary(viewer, row) for row in rows) if item]
        named = [item.order.id for item in items if item.patient_name]
        if named:
            self._audit_phi(viewer, named, "tower:orders")
        return Page(items, next_cursor)

    def summary(self, viewer: Viewer, order_id: str) -> OrderSummary:
        with self.orders.uow(readonly=True) as uow:
            row = store.order_row(uow.conn, viewer.scope, order_id)
        summary = self._summary(viewer, row) if row is not None else None
        if summary is None:
            raise NotFound(f"No order with id {order_id}.", order_id=order_id)
        if summary.patient_name:
            self._audit_phi(viewer, [order_id], "tower:order")
        return summary

    def _summary(self, viewer: Viewer, row: store.OrderRow) -> OrderSummary | None:
        order = TherapyOrder.model_validate_json(row.document)
        if not viewer.may_see(order):  # SQL scoped the query; this is the rule itself
            return None
        name = None
        if viewer.sees_phi(order) and row.family_name:
            name = f"{row.family_name}, {row.given_name}" if row.given_name else row.family_name
        rules = self._rules(order)
        spans = time_in_state(order, rules, self.now)
        return OrderSummary(order, name, order_alerts(order, rules, self.now), spans[-1])

    def funnel(self, viewer: Viewer) -> Funnel:
        with self.orders.uow(readonly=True) as uow:
            counts = store.state_counts(uow.conn, viewer.scope)
        per_state: dict[str, int] = dict.fromkeys((s.value for s in FUNNEL_STATES), 0)
        by_therapy: dict[str, dict[str, int]] = {}
        on_hold = 0
        for count in counts:
            per_state[count.state] = per_state.get(count.state, 0) + count.count
            cells = by_therapy.setdefault(count.therapy_code, {})
            cells[count.state] = cells.get(count.state, 0) + count.count
            if count.on_hold and count.state not in store.TERMINAL:
                on_hold += count.count
                cells[ON_HOLD] = cells.get(ON_HOLD, 0) + count.count
        return Funnel(
            [*per_state.items(), (ON_HOLD, on_hold)],
            by_therapy,
            sum(per_state.values()),
            on_hold,
        )

    # --- alerts -------------------------------------------------------------------------------
    def alerts(
        self, viewer: Viewer, *, include_resolved: bool = False, limit: int = 200
    ) -> AlertList:
        now = self.now
        found: list[tuple[Alert, TherapyOrder | None]] = []
        with self.orders.uow(readonly=True) as uow:
            states = sorted(state.value for state in ALERTING_STATES)
            for document in store.alert_candidates(uow.conn, viewer.scope, states):
                order = TherapyOrder.model_validate_json(document)
                if viewer.may_see(order):
                    found.extend((a, order) for a in order_alerts(order, self._rules(order), now))
            for item in store.dead_letters(uow.conn, viewer.scope):
                found.append((dead_letter_alert(item), None))
            known = store.alert_states_for(uow.conn, [alert.key for alert, _ in found])
        orders = {alert.key: order for alert, order in found}
        listed = [
            self._listed(alert, known.get(alert.key), orders.get(alert.key))
            for alert in sort_alerts([alert for alert, _ in found])
            if include_resolved or _open(known.get(alert.key))
        ]
        by_kind: dict[str, int] = {}
        for entry in listed:
            by_kind[entry.alert.kind.value] = by_kind.get(entry.alert.kind.value, 0) + 1
        return AlertList(listed[:limit], len(listed), by_kind)

    def order_detail(self, viewer: Viewer, order_id: str) -> OrderDetail:
        order = self._visible(viewer, order_id)
        rules = self._rules(order)
        now = self.now
        alerts = order_alerts(order, rules, now)
        with self.orders.uow(readonly=True) as uow:
            dead = [
                dead_letter_alert(item)
                for item in store.dead_letters(uow.conn, viewer.scope)
                if item.order_id == order_id
            ]
            alerts = sort_alerts([*alerts, *dead])
            known = store.alert_states_for(uow.conn, [alert.key for alert in alerts])
        patient = self.orders.patient_of(order_id) if viewer.sees_phi(order) else None
        if patient is not None:
            self._audit_phi(viewer, [order_id], "tower:order detail")
        return OrderDetail(
            order=order,
            patient=patient,
            rules=rules,
            alerts=[self._listed(alert, known.get(alert.key), order) for alert in alerts],
            spans=time_in_state(order, rules, now),
            timeline=timeline(order),
        )

    def act(self, viewer: Viewer, key: str, action: Action, note: str | None) -> ListedAlert:
        """Acknowledge or resolve a current alert, audited in the same transaction."""
        if not viewer.may_act:
            raise NotAllowed("Only the treating site's coordinators act on alerts.")
        alert, order = self._current_alert(viewer, key)
        now = self.now
        with self.orders.uow() as uow:
            state = store.record_alert_action(
                uow.conn,
                key=key,
                kind=alert.kind.value,
                order_id=alert.order_id,
                action=action,
                actor=viewer.id,
                at=now,
                note=note,
            )
            audit.append(
                uow.conn,
                at=now,
                actor=viewer.id,
                action="alert.acknowledged" if action == "acknowledge" else "alert.resolved",
                order_id=alert.order_id,
                payload={
                    "alert": key,
                    "kind": alert.kind.value,
                    "severity": alert.severity.value,
                    "title": alert.title,
                    "note": note,
                },
            )
            uow.commit()
        return self._listed(alert, state, order)

    def _current_alert(self, viewer: Viewer, key: str) -> tuple[Alert, TherapyOrder | None]:
        kind, _, rest = key.partition(":")
        missing = NotFound(f"No current alert {key}; it may have cleared already.", alert=key)
        if kind == AlertKind.DEAD_LETTER.value:
            if not rest.isdigit():
                raise missing
            with self.orders.uow(readonly=True) as uow:
                item = store.dead_letter(uow.conn, int(rest))
            if item is None:
                raise missing
            order = None
            if item.order_id is not None:
                order = self._visible(viewer, item.order_id)
            elif not viewer.scope.everything:
                raise missing
            return dead_letter_alert(item), order
        order_id = rest.partition(":")[0]
        try:
            order = self._visible(viewer, order_id)
        except NotFound:
            raise missing from None
        for alert in order_alerts(order, self._rules(order), self.now):
            if alert.key == key:
                return alert, order
        raise missing

    def _visible(self, viewer: Viewer, order_id: str) -> TherapyOrder:
        order = self.orders.get(order_id)
        if not viewer.may_see(order):
            # 404, not 403: a partner must not learn that another partner's order exists
            raise NotFound(f"No order with id {order_id}.", order_id=order_id)
        return order

    @staticmethod
    def _listed(alert: Alert, state: AlertState | None, order: TherapyOrder | None) -> ListedAlert:
        if order is None:
            return ListedAlert(alert, state)
        return ListedAlert(alert, state, order.coi, order.patient_pseudonym, order.therapy.name)


def _open(state: AlertState | None) -> bool:
    return state is None or state.status != "resolved"


_MILESTONE_LABELS: dict[str, str] = {
    "enrolled_at": "Enrolled",
    "slot_requested_at": "Slot requested",
    "slot_confirmed_at": "Slot confirmed",
    "collected_at": "Apheresis collected",
    "shipped_to_mfg_at": "Shipped to manufacturer",
    "received_at_mfg_at": "Received at manufacturer",
    "manufacturing_started_at": "Manufacturing started",
    "released_at": "Released",
    "oos_accepted_at": "Out-of-specification product accepted",
    "mfg_failed_at": "Manufacturing failed",
    "shipped_to_site_at": "Shipped to site",
    "received_at_site_at": "Received at site",
    "stored_at": "Stored",
    "thawed_at": "Thawed",
    "infused_at": "Infused",
    "cancelled_at": "Cancelled",
}


def timeline(order: TherapyOrder) -> list[TimelineEntry]:
    """Everything that happened to the order, oldest first, as one list people can read."""
    entries = [TimelineEntry(order.created_at, "milestone", "Referred", order.site.id)]
    milestones = order.milestones
    for name, label in _MILESTONE_LABELS.items():
        at = getattr(milestones, name)
        if at is not None:
            implied = " (implied by a later event)" if name in milestones.implied else ""
            tone = "bad" if name in ("mfg_failed_at", "cancelled_at") else ""
            entries.append(TimelineEntry(at, "milestone", label, implied.strip(" ()"), tone))
    for planned, label in (
        (None if milestones.collected_at else milestones.apheresis_at, "Apheresis booked"),
        (None if milestones.infused_at else milestones.planned_infusion_at, "Infusion planned"),
    ):
        if planned is not None:
            entries.append(TimelineEntry(planned, "plan", label))
    for shipment in order.shipments:
        carrier = " ".join(filter(None, [shipment.courier, shipment.tracking_number]))
        for step in shipment.milestones:
            entries.append(
                TimelineEntry(
                    step.at,
                    "shipment",
                    f"Courier: {step.code.replace('_', ' ')}",
                    " · ".join(filter(None, [carrier, step.location])),
                )
            )
        for excursion in shipment.excursions:
            entries.append(
                TimelineEntry(
                    excursion.started_at,
                    "excursion",
                    "Temperature excursion",
                    f"{excursion.worst_celsius:g} °C, limit {excursion.limit_celsius:g} °C"
                    f" · {carrier}".rstrip(" ·"),
                    "bad",
                )
            )
    for event in order.custody_events:
        who = " ".join(filter(None, [event.who.person, event.who.role, event.who.organisation]))
        tone = {"green": "good", "red": "bad"}.get(event.verification or "", "")
        entries.append(
            TimelineEntry(
                event.at,
                "custody",
                f"Custody: {event.action.value.replace('_', ' ')}",
                " · ".join(filter(None, [who, event.where, event.unit_id, event.reason])),
                tone,
            )
        )
    for scan in order.scans:
        entries.append(
            TimelineEntry(
                scan.at,
                "scan",
                f"Scan at {scan.checkpoint}: {'GREEN' if scan.green else 'RED'}",
                " · ".join(filter(None, [scan.user, scan.unit_id, scan.reason])),
                "good" if scan.green else "bad",
            )
        )
    for hold in order.holds:
        reason = hold.reason.value.replace("_", " ")
        bad = hold.reason in (HoldReason.TEMPERATURE_EXCURSION, HoldReason.IDENTITY_MISMATCH)
        entries.append(
            TimelineEntry(
                hold.placed_at,
                "hold",
                f"Hold placed: {reason}",
                " · ".join(filter(None, [hold.detail, hold.placed_by])),
                "bad" if bad else "",
            )
        )
        if hold.released_at is not None:
            entries.append(
                TimelineEntry(
                    hold.released_at,
                    "hold_released",
                    f"Hold released: {reason}",
                    " · ".join(filter(None, [hold.resolution, hold.released_by])),
                    "good",
                )
            )
    return sorted(entries, key=lambda entry: entry.at)


def as_state(value: str | None) -> str | None:
    """A state filter from a query string: a lifecycle state, ON_HOLD or nothing."""
    if not value:
        return None
    if value == ON_HOLD or value in OrderState.__members__:
        return value
    raise ValueError(value)


def listed_alert_json(entry: ListedAlert) -> dict[str, Any]:
    alert, state = entry.alert, entry.state
    return {
        "key": alert.key,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "title": alert.title,
        "detail": alert.detail,
        "since": alert.since.isoformat(),
        "due": alert.due.isoformat() if alert.due else None,
        "order_id": alert.order_id,
        "coi": entry.coi,
        "pseudonym": entry.pseudonym,
        "therapy": entry.therapy,
        "status": state.status if state else "open",
        "acknowledged_by": state.acknowledged_by if state else None,
        "acknowledged_at": state.acknowledged_at.isoformat()
        if state and state.acknowledged_at
        else None,
        "resolved_by": state.resolved_by if state else None,
        "note": state.note if state else None,
    }
