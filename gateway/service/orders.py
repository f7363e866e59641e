"""Use cases on therapy orders. Entrypoints and adapters call these and nothing lower.

Each use case is one transaction: the order's new state, the raw inbound message that
caused it (when there is one), the audit entry and the outbox rows commit together or not
at all. Refusals are audited too, in their own transaction, because "we said no" is part
of the record.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.domain import lifecycle
from gateway.domain.errors import DomainError, TransitionRefused
from gateway.domain.lifecycle import LifecycleEvent, Outcome
from gateway.domain.model import ExternalIds, Therapy, TherapyOrder
from gateway.domain.patient import PatientIdentity, new_pseudonym
from gateway.domain.redaction import redact_patient
from gateway.domain.rules import TherapyRules
from gateway.domain.states import EventType
from gateway.domain.tracking import Amendment, Change
from gateway.service.clock import Clock, utc_now
from gateway.service.commands import CreateOrder
from gateway.service.errors import (
    Conflict,
    NotFound,
    ServiceError,
    UnknownTherapy,
    VersionMismatch,
)
from gateway.service.notifications import Notice, notices_for
from gateway.service.unit_of_work import ConnectionKeeper, UnitOfWork
from gateway.store import audit, inbox, outbox
from gateway.store.repository import (
    ConcurrencyConflict,
    DuplicateIdentifier,
    OrderPage,
    PatientChange,
)
from gateway.therapy_rules import RuleBook

log = logging.getLogger(__name__)

CoiIssuer = Callable[[TherapyOrder, datetime], str]


def default_coi_issuer(default_facility: str) -> CoiIssuer:
    def issue(order: TherapyOrder, at: datetime) -> str:
        from labeling.coi import new_coi

        return new_coi(order.site.facility_code or default_facility, at.year % 100).value

    return issue


def _audit_patient(
    uow: UnitOfWork,
    change: PatientChange,
    site_id: str,
    *,
    actor: str,
    at: datetime,
    order_id: str | None = None,
) -> None:
    """``patient.created`` / ``patient.updated`` with the names of the fields that changed,
    never their values; nothing when nothing changed."""
    if change.kind == "unchanged":
        return
    payload: dict[str, Any] = {"site": site_id, "fields": change.fields}
    if order_id is None:
        # Against an order the order names its patient; its partners must not get the
        # patient's id, which would link the patient's orders to each other.
        payload["patient_id"] = change.patient_id
    audit.append(
        uow.conn,
        at=at,
        actor=actor,
        action=f"patient.{change.kind}",
        order_id=order_id,
        payload=payload,
    )


#: The free-text details a hospital types that the order, and so its partners, keep.
_FREE_TEXT = ("reason", "location")


def _without_patient_identifiers(
    uow: UnitOfWork, order_id: str, event: LifecycleEvent
) -> tuple[LifecycleEvent, list[str]]:
    """The event with the order's patient's name, MRN and birth date taken out of its
    free text (see ``gateway.domain.redaction``), and the names of the fields changed."""
    details = event.details
    texts = {name: getattr(details, name) for name in _FREE_TEXT if getattr(details, name)}
    if not texts:
        return event, []
    patient = uow.orders.patient_of(order_id)
    if patient is None:
        return event, []
    changed = {
        name: cleaned
        for name, text in texts.items()
        if (cleaned := redact_patient(text, patient)) != text
    }
    if not changed:
        return event, []
    update = {"details": details.model_copy(update=changed)}
    return event.model_copy(update=update), sorted(changed)


def notice_key(order_id: str, version: int, notice: Notice) -> str:
    """One key per notice: an order version may send a destination a status and an alert."""
    key = f"{order_id}:{version}:{notice.destination}"
    return key if notice.kind == "order.status" else f"{key}:{notice.kind}"


@dataclass(frozen=True)
class InboundMessage:
    """A partner's message exactly as it arrived, with the key that makes retries safe."""

    key: str
    channel: str
    sender: str
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: str  # accepted | rejected | error
    body: bytes
    content_type: str
    order_id: str | None = None
    duplicate: bool = False
    #: What was wrong, in a sentence, for a reply that is not an acceptance: the body is
    #: the whole answer (an ACK, an OperationOutcome), too much for an operator's list.
    reason: str | None = None


class OrderService:
    def __init__(
        self,
        engine: Engine,
        rules: RuleBook,
        *,
        clock: Clock = utc_now,
        coi_issuer: CoiIssuer | None = None,
        default_facility: str = "A9999",
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.clock = clock
        self.issue_coi = coi_issuer or default_coi_issuer(default_facility)
        self.listeners: list[Callable[[TherapyOrder], None]] = []

    def uow(
        self,
        *,
        readonly: bool = False,
        flush_later: bool = False,
        keeper: ConnectionKeeper | None = None,
    ) -> UnitOfWork:
        return UnitOfWork(self.engine, readonly=readonly, flush_later=flush_later, keeper=keeper)

    # --- queries ----------------------------------------------------------------------
    def get(self, order_id: str) -> TherapyOrder:
        with self.uow(readonly=True) as uow:
            order = uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"No order with id {order_id}.", order_id=order_id)
        return order

    def find(self, kind: str, value: str, namespace: str | None = None) -> TherapyOrder | None:
        with self.uow(readonly=True) as uow:
            return uow.orders.find_by_identifier(kind, value, namespace)

    def search(self, **criteria: Any) -> OrderPage:
        with self.uow(readonly=True) as uow:
            return uow.orders.search(**criteria)

    def placing_message_key(self, order_id: str, channel: str) -> str | None:
        """The inbox key of the message that placed the order over ``channel``, if any."""
        with self.uow(readonly=True) as uow:
            return inbox.first_accepted_key(uow.conn, order_id, channel)

    def patient_of(self, order_id: str) -> PatientIdentity | None:
        with self.uow(readonly=True) as uow:
            return uow.orders.patient_of(order_id)

    # --- commands ---------------------------------------------------------------------
    def create_order(
        self, command: CreateOrder, *, actor: str, uow: UnitOfWork | None = None
    ) -> TherapyOrder:
        """Create an order in REFERRED. Pass ``uow`` to join the caller's transaction; a
        service error then leaves that transaction part-written, so the caller rolls it (or
        its own savepoint) back, as every caller does on an error."""
        if uow is None:
            with self.uow() as own:
                order = self.create_order(command, actor=actor, uow=own)
                own.commit()
            self._notify(order)
            return order
        rules = self.rules.get(command.therapy_code)
        if rules is None:
            raise UnknownTherapy(
                f"Therapy '{command.therapy_code}' has no rule file; known: "
                f"{', '.join(self.rules.codes())}.",
                therapy_code=command.therapy_code,
            )
        now = self.clock()
        order = TherapyOrder(
            patient_pseudonym=new_pseudonym(),
            therapy=Therapy(
                code=rules.code,
                name=rules.name,
                manufacturer=rules.manufacturer,
                product_code=rules.product_code,
            ),
            site=command.site,
            clinician=command.clinician,
            external_ids=ExternalIds(
                placer_number=command.placer_number, erp_purchase_order=command.erp_purchase_order
            ),
            created_at=now,
            updated_at=now,
        )
        order.milestones.planned_infusion_at = command.planned_infusion_at
        patient = uow.orders.register_patient(command.site.id, command.patient, now)
        # No savepoint of our own: one per write cost more than the write, and a failed
        # command is always rolled back by its caller (see the docstring).
        try:
            uow.orders.add(order, patient.patient_id)
        except DuplicateIdentifier as exc:
            raise _conflict(exc) from exc
        except IntegrityError as exc:
            raise Conflict("The order collides with an existing one.") from exc
        # Audited only once the order exists: a caller whose savepoint takes back a refused
        # order takes back the patient's change with it, and must find nothing queued.
        _audit_patient(uow, patient, command.site.id, actor=actor, at=now, order_id=order.id)
        audit.append(
            uow.conn,
            at=now,
            actor=actor,
            action="order.created",
            order_id=order.id,
            payload={
                "therapy": rules.code,
                "site": command.site.id,
                "placer_number": command.placer_number,
                "version": 1,
            },
        )
        return order

    def register_patient(
        self,
        uow: UnitOfWork,
        site_id: str,
        patient: PatientIdentity,
        *,
        actor: str,
        at: datetime,
        cleared: Collection[str] = (),
    ) -> str:
        """Store a site's patient identity (PHI) in the caller's transaction and audit what
        changed: which fields, never their values, since partners read the audit trail of
        their orders. Returns the patient's id."""
        change = uow.orders.register_patient(site_id, patient, at, cleared=cleared)
        _audit_patient(uow, change, site_id, actor=actor, at=at)
        return change.patient_id

    def apply_event(
        self,
        order_id: str,
        event: LifecycleEvent,
        *,
        actor: str,
        expected_version: int | None = None,
        uow: UnitOfWork | None = None,
    ) -> Outcome:
        """Apply a lifecycle event. Refusals raise :class:`TransitionRefused` after being
        audited; a stale ``expected_version`` raises :class:`VersionMismatch`."""
        if uow is None:
            try:
                with self.uow() as own:
                    outcome = self.apply_event(
                        order_id, event, actor=actor, expected_version=expected_version, uow=own
                    )
                    own.commit()
            except TransitionRefused as refusal:
                self.record_refusal(order_id, event, refusal, actor=actor)
                raise
            if outcome.changed:
                self._notify(outcome.order)
            return outcome
        order, rules = self._lock(uow, order_id)
        if expected_version is not None and order.version != expected_version:
            raise VersionMismatch(
                f"Order {order_id} is at version {order.version}, not {expected_version}; "
                "re-read it and decide again.",
                current_version=order.version,
            )
        event, redacted = _without_patient_identifiers(uow, order_id, event)
        now = self.clock()
        if event.type is EventType.ENROLL and not event.details.coi and not order.coi:
            event = event.model_copy(
                update={
                    "details": event.details.model_copy(
                        update={"coi": self.issue_coi(order, event.at or now)}
                    )
                }
            )
        outcome = lifecycle.apply(order, event, rules, now)
        if not outcome.changed:
            return outcome
        _save(uow, outcome.order, expected_version=order.version)
        audit.append(
            uow.conn,
            at=now,
            actor=actor,
            action=f"order.{event.type.value}",
            order_id=order_id,
            payload={
                "outcome": outcome.kind,
                "from": outcome.previous_state.value,
                "to": outcome.order.state.value,
                "version": outcome.order.version,
                "applied": [step.value for step in outcome.applied],
                "source": event.source.value,
                "event": event.model_dump(mode="json", exclude_none=True),
                "note": outcome.note,
                **({"redacted": redacted} if redacted else {}),
            },
        )
        for notice in notices_for(outcome, event.type.value, event):
            outbox.enqueue(
                uow.conn,
                destination=notice.destination,
                kind=notice.kind,
                payload=notice.payload,
                order_id=order_id,
                at=now,
                idempotency_key=notice_key(order_id, outcome.order.version, notice),
            )
        return outcome

    def amend(
        self, order_id: str, change: Change, *, action: str, actor: str, uow: UnitOfWork
    ) -> Amendment | None:
        """Record a fact that is not a lifecycle step (courier tracking, a partner's
        reference) as a new, audited version of the order, inside the caller's transaction.
        Returns None when the fact was already known."""
        order, rules = self._lock(uow, order_id)
        now = self.clock()
        amendment = change(order, rules, now)
        if amendment is None:
            return None
        _save(uow, amendment.order, expected_version=order.version)
        audit.append(
            uow.conn,
            at=now,
            actor=actor,
            action=f"order.{action}",
            order_id=order_id,
            payload={"version": amendment.order.version, **amendment.summary},
        )
        return amendment

    def _lock(self, uow: UnitOfWork, order_id: str) -> tuple[TherapyOrder, TherapyRules]:
        """The order, locked for this transaction, with its therapy's rules."""
        order = uow.orders.get(order_id, for_update=True)
        if order is None:
            raise NotFound(f"No order with id {order_id}.", order_id=order_id)
        rules = self.rules.get(order.therapy.code)
        if rules is None:
            raise UnknownTherapy(f"Therapy '{order.therapy.code}' has no rule file.")
        return order, rules

    def record_refusal(
        self, order_id: str, event: LifecycleEvent, refusal: TransitionRefused, *, actor: str
    ) -> None:
        with self.uow() as uow:
            audit.append(
                uow.conn,
                at=self.clock(),
                actor=actor,
                action="order.refused",
                order_id=order_id,
                payload={
                    "event": event.type.value,
                    "code": refusal.code,
                    "reason": refusal.message,
                    "details": refusal.details,
                    "source": event.source.value,
                },
            )
            uow.commit()

    # --- inbound messages ---------------------------------------------------------------
    def process_inbound(
        self,
        message: InboundMessage,
        handle: Callable[[UnitOfWork], Reply],
        on_error: Callable[[Exception], Reply],
    ) -> Reply:
        """Store a partner's message, run its effects and keep the reply, all in one
        transaction; a retry of a committed message gets the stored reply back.

        ``handle`` runs the message's commands inside the transaction and builds the
        acknowledgement. When it raises, its effects are rolled back, ``on_error`` builds
        the negative acknowledgement and the message is still stored, marked rejected.
        """
        for _attempt in range(3):
            try:
                return self._process_once(message, handle, on_error)
            except IntegrityError:
                # A concurrent copy of the same message committed first; answer as it did.
                stored = self.stored_reply(message.key)
                if stored is not None:
                    return stored
        raise RuntimeError(f"could not store inbound message {message.key}")

    def stored_reply(self, key: str) -> Reply | None:
        """The reply a committed message got, for a retry of it; None if not answered."""
        with self.uow(readonly=True) as uow:
            record = inbox.find(uow.conn, key)
        return replayed(record) if record is not None else None

    def _process_once(
        self,
        message: InboundMessage,
        handle: Callable[[UnitOfWork], Reply],
        on_error: Callable[[Exception], Reply],
    ) -> Reply:
        changed: list[str] = []
        refusals: list[str] = []
        with self.uow() as uow:
            existing = inbox.find(uow.conn, message.key)
            stored = replayed(existing) if existing is not None else None
            if stored is not None:
                return stored
            if existing is not None and existing.status == inbox.FAILED:
                inbox.set_aside(uow.conn, existing)
            now = self.clock()
            inbox_id = inbox.record(
                uow.conn,
                message_key=message.key,
                channel=message.channel,
                sender=message.sender,
                received_at=now,
                content_type=message.content_type,
                body=message.body,
                status="received",
            )
            try:
                with uow.conn.begin_nested():
                    reply = handle(uow)
            except Exception as exc:
                reply = answer_failure(message, exc, on_error, refusals)
            inbox.set_response(
                uow.conn,
                inbox_id,
                status=reply.status,
                response=reply.body,
                content_type=reply.content_type,
                error=rejection_text(reply),
                order_id=reply.order_id,
            )
            if reply.status != "accepted":
                audit_rejection(uow.conn, message, reply, refusals, at=now)
            elif reply.order_id:
                changed.append(reply.order_id)
            uow.commit()
        for order_id in changed:
            self._notify_id(order_id)
        return reply

    def record_access(self, order_id: str, *, actor: str, what: str) -> None:
        """Audit a read of patient identity: who saw which order's patient, and through what."""
        self.record_access_many([order_id], actor=actor, what=what)

    def record_access_many(self, order_ids: list[str], *, actor: str, what: str) -> None:
        """Audit a list that showed the patient identity of several orders: one entry per
        order, in one transaction, so each order's trail says who saw its patient."""
        with self.uow() as uow:
            at = self.clock()
            with audit.deferred(uow.conn):  # one write of the chain's head for the list
                for order_id in order_ids:
                    audit.append(
                        uow.conn,
                        at=at,
                        actor=actor,
                        action="phi.read",
                        order_id=order_id,
                        payload={"what": what},
                    )
            uow.commit()

    # --- listeners (live updates) ---------------------------------------------------------
    def publish(self, order: TherapyOrder) -> None:
        """Tell live listeners (the control tower, the scan station) that an order changed."""
        self._notify(order)

    def _notify(self, order: TherapyOrder) -> None:
        for listener in list(self.listeners):
            try:
                listener(order)
            except Exception:
                log.exception("order listener failed")

    def _notify_id(self, order_id: str) -> None:
        if self.listeners:
            with contextlib.suppress(NotFound):
                self._notify(self.get(order_id))


def _conflict(exc: DuplicateIdentifier) -> Conflict:
    return Conflict(str(exc), identifier=exc.kind, value=exc.value, existing_order_id=exc.order_id)


def _save(uow: UnitOfWork, order: TherapyOrder, *, expected_version: int) -> None:
    """Write a new version of an order; a lost race or a taken identifier becomes the
    service error its callers answer with (and roll back, as after ``create_order``)."""
    try:
        uow.orders.save(order, expected_version=expected_version)
    except ConcurrencyConflict as exc:
        raise VersionMismatch(str(exc)) from exc
    except DuplicateIdentifier as exc:
        raise _conflict(exc) from exc


def replayed(record: inbox.InboxRecord) -> Reply | None:
    """The stored reply of an inbox record, as a duplicate; None while it has none, and
    None after a failure of the gateway's own, whose reply asked for the message again."""
    if record.response is None or record.status == inbox.FAILED:
        return None
    return Reply(
        record.status,
        record.response,
        record.response_content_type or "",
        record.order_id,
        duplicate=True,
    )


def is_transient(exc: Exception) -> bool:
    """A failure of the gateway rather than of the message (a bug, a deadlock or lost
    connection, a concurrent change): the same message may well succeed when resent, so
    its reply must not be replayed to the resend (status :data:`inbox.FAILED`)."""
    if isinstance(exc, (VersionMismatch, ConcurrencyConflict, DBAPIError)):
        return True
    refusals = (TransitionRefused, ServiceError, DomainError, ValueError, LookupError)
    return not isinstance(exc, refusals)


def answer_failure(
    message: InboundMessage,
    exc: Exception,
    on_error: Callable[[Exception], Reply],
    refusals: list[str],
) -> Reply:
    """The negative acknowledgement for a message whose effects failed. Refusals and bad
    data are expected; anything else is a bug and is logged with its traceback."""
    if not isinstance(exc, (TransitionRefused, ValueError, LookupError)):
        log.exception("inbound message %s failed", message.key)
    if isinstance(exc, TransitionRefused):
        refusals.append(exc.code)
    return on_error(exc)


def rejection_text(reply: Reply) -> str | None:
    """What the inbox keeps as the error of a message that was not accepted: the reason
    the channel gave, or, from a channel that gave none, the start of the reply itself."""
    if reply.status == "accepted":
        return None
    if reply.reason:
        return reply.reason[:2000]
    return reply.body[:2000].decode("utf-8", "replace")


def audit_rejection(
    conn: Connection, message: InboundMessage, reply: Reply, refusals: list[str], *, at: datetime
) -> None:
    audit.append(
        conn,
        at=at,
        actor=message.sender,
        action="message.rejected",
        order_id=reply.order_id,
        payload={"channel": message.channel, "message_key": message.key, "refusal": refusals},
    )
