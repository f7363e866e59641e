"""Inbound HL7 v2: one message → canonical commands → one transaction → ACK bytes.

:class:`InboundHandler` is synchronous (the listener calls it off the event loop). Every
message, readable or not, goes through ``OrderService.process_inbound`` (:meth:`handle`) or
its group-commit twin ``process_inbound_batch`` (:meth:`handle_batch`, what the listener
uses), so the raw bytes are stored, retries with the same MSH-3/MSH-4/MSH-10 get the
original ACK back, and a failure rolls back every effect of the message. An inbound ACK
is never acknowledged; it is logged (the outbound client correlates its own ACKs on its
own connection).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from adapters.hl7v2.ack import (
    AckCode,
    ErrorDetail,
    ack_mode,
    build_ack,
    enhanced,
    split_messages,
    wanted,
)
from adapters.hl7v2.er7 import Er7Error, Message, parse, parse_header, parse_path
from adapters.hl7v2.mapping import Profile, ProfileBook
from gateway.domain.errors import DomainError, TransitionRefused
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import (
    Actor,
    Clinician,
    HoldReason,
    Site,
    Source,
    TherapyOrder,
    Unit,
    UnitKind,
)
from gateway.domain.patient import PatientIdentity
from gateway.domain.states import EventType, OrderState
from gateway.service.commands import CreateOrder
from gateway.service.errors import Conflict, NotFound, ServiceError, UnknownTherapy, VersionMismatch
from gateway.service.inbound_batch import InboundWork, process_inbound_batch
from gateway.service.orders import InboundMessage, OrderService, Reply, is_transient
from gateway.service.unit_of_work import ConnectionKeeper, UnitOfWork
from gateway.sites import SiteConfig, SiteDirectory
from gateway.store import inbox
from gateway.store.wal_flush import WalFlusher

log = logging.getLogger(__name__)

CHANNEL = "hl7v2"
_UNKEYED = f"{CHANNEL}:unkeyed:"  # a message whose MSH-10 could not be read
_REFUSED_ADDRESS = f"{CHANNEL}:refused-address:"  # a sender from outside its networks
CONTENT_TYPE = "x-application/hl7-v2+er7"
SUPPORTED = {
    "ORM": {"O01"},
    "OMP": {"O09"},
    "RDE": {"O11"},
    "OML": {"O21"},
    "SIU": {"S12", "S13", "S14", "S15"},
    "ADT": {"A04", "A08", "A31"},
    "RAS": {"O17"},
}
_VERSION = re.compile(r"^2\.[1-8](\.\d+)?$")
_DTM = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?(?:([+-])(\d{2})(\d{2}))?$"
)
_UNIT_ID = re.compile(r"^[A-Z0-9]{13}[A-Z0-9*]?$")
#: HL7 v2's explicit null: the sender asks for the stored value to be deleted.
HL7_NULL = '""'


class MessageProblem(ValueError):
    """What is wrong with a message, located for the ERR segment."""

    def __init__(self, ack: AckCode, detail: ErrorDetail, order_id: str | None = None) -> None:
        super().__init__(detail.reason)
        self.ack = ack
        self.detail = detail
        self.order_id = order_id


def _located(path: str) -> dict[str, object]:
    where = parse_path(path)
    return {
        "segment": where.segment,
        "sequence": where.occurrence,
        "field": where.field,
        "component": where.component,
    }


def problem(
    code: str, reason: str, path: str | None = None, *, ack: AckCode = "AE"
) -> MessageProblem:
    if path is None:
        return MessageProblem(ack, ErrorDetail(code, reason))
    return MessageProblem(ack, ErrorDetail(code, reason, **_located(path)))  # type: ignore[arg-type]


def _host(peer: str) -> str:
    """The address of a ``host:port`` peer (IPv6 as the listener writes it, or bracketed)."""
    return peer.rpartition(":")[0].strip("[]")


def missing_segment(segment: str, reason: str) -> MessageProblem:
    """A segment the mapping needs is not in the message: the ERR names it (ERR-2.1, or
    ERR-1.1 before v2.5), as there is no field to point at."""
    return MessageProblem("AE", ErrorDetail("100", reason, segment=segment))


def not_found(message: Message, paths: Sequence[str], what: str) -> MessageProblem:
    """``what`` is at none of ``paths``. When none of their segments is in the message
    either (a message cut short, say), the segment is what is missing, not a field."""
    segments = list(dict.fromkeys(parse_path(path).segment for path in paths))
    present = [path for path in paths if message.has(parse_path(path).segment)]
    if segments and not present:
        others = f" (nor {', '.join(segments[1:])})" if len(segments) > 1 else ""
        return missing_segment(
            segments[0], f"the message has no {segments[0]} segment{others} with {what}"
        )
    located = present or paths
    return problem("101", f"{what} is missing", located[0] if located else None)


@dataclass
class Context:
    """What the mapping has learnt so far; the error path reads it to say where."""

    message: Message | None = None
    profile: Profile | None = None
    site: SiteConfig | None = None
    order_id: str | None = None
    location: str | None = None  # the field that triggered the current command
    notes: list[str] = field(default_factory=list)


class InboundHandler:
    """Maps HL7 v2 messages to canonical commands and builds their acknowledgements."""

    def __init__(
        self,
        service: OrderService,
        profiles: ProfileBook,
        sites: SiteDirectory,
        *,
        sending_application: str = "VEIN2VEIN",
        sending_facility: str = "V2V",
        flusher: WalFlusher | None = None,
    ) -> None:
        """``flusher``: batches commit without syncing the SQLite log, and whoever writes
        their ACKs must first wait for this flusher (the MLLP listener does)."""
        self.service = service
        self.flusher = flusher
        self.keeper = ConnectionKeeper(service.engine)
        self.profiles = profiles
        self.sites = sites
        self.sending_application = sending_application
        self.sending_facility = sending_facility
        self._dispatch: dict[str, Callable[[Message, UnitOfWork, Context], str | None]] = {
            "ORM": self._order,
            "OMP": self._order,
            "RDE": self._order,
            "OML": self._collection,
            "SIU": self._appointment,
            "ADT": self._patient,
            "RAS": self._administration,
        }

    # --- entry points ---
    def handle(self, raw: bytes, peer: str = "") -> list[bytes]:
        """The frames to write back for one inbound message (none for an inbound ACK)."""
        work = self.prepare(raw, peer)
        if work is None:
            return []
        try:
            reply = self.service.process_inbound(work.message, work.handle, work.on_error)
        except Exception as exc:
            log.exception(
                "could not store inbound message %s; sender must resend", work.message.key
            )
            reply = work.on_unstored(exc)
        return split_messages(reply.body)

    def handle_batch(self, items: Sequence[tuple[bytes, str]]) -> list[list[bytes]]:
        """The frames to write back for each of several messages, committed together
        (group commit); nothing may be written back before this returns."""
        answers: list[list[bytes]] = [[] for _ in items]
        work: list[InboundWork] = []
        slots: list[int] = []
        between = self.flusher.poll if self.flusher is not None else None
        for index, (raw, peer) in enumerate(items):
            prepared = self.prepare(raw, peer)
            if prepared is not None:
                work.append(prepared)
                slots.append(index)
            if between is not None:
                between()
        replies = process_inbound_batch(
            self.service,
            work,
            flush_later=between is not None,
            keeper=self.keeper,
            between=between,
        )
        for index, reply in zip(slots, replies, strict=True):
            answers[index] = split_messages(reply.body)
        return answers

    def close(self) -> None:
        """Give back the connection kept for group commits."""
        self.keeper.close()

    def prepare(self, raw: bytes, peer: str = "") -> InboundWork | None:
        """Parse one message and bind what storing and applying it takes; None for an
        inbound ACK, which is logged and never acknowledged."""
        try:
            message: Message | None = parse(raw)
            parse_error: Er7Error | None = None
        except Er7Error as exc:
            # A later segment is broken: the header alone still says who sent what, so the
            # AR can echo its control id and go where the sender's engine will match it.
            message, parse_error = parse_header(raw), exc
        if message is not None and message.message_code in ("ACK", "MCF"):
            msa = message.segment("MSA")
            log.info(
                "inbound ACK from %s (%s): %s for %s; not acknowledged",
                peer or "?",
                message.sending_facility,
                msa.value(1) if msa else "?",
                msa.value(2) if msa else "?",
            )
            return None
        sender = message.sending_facility if message is not None else (peer or "unknown")
        refused = self._address_refusal(message, peer)
        key = self._key(raw, message if parse_error is None else None)
        if refused is not None:
            # Not under the sender's key: a stranger who guessed the engine's next control id
            # would otherwise have its real message answered with this stored refusal.
            digest = hashlib.sha256(f"{_host(peer)}|".encode() + raw).hexdigest()
            key = f"{_REFUSED_ADDRESS}{digest}"
        inbound = InboundMessage(
            # A message that could not be read whole is keyed by its bytes: the sender's
            # corrected copy may well reuse the control id.
            key=key,
            channel=CHANNEL,
            sender=f"hl7v2:{sender}"[:200],
            content_type=CONTENT_TYPE,
            body=raw,
        )
        # A message may be applied more than once (a batch that could not commit is retried
        # per message), so each attempt starts from a fresh context.
        latest = [Context(message=message)]

        def handle(uow: UnitOfWork) -> Reply:
            context = Context(message=message)
            latest[0] = context
            if refused is not None:
                raise refused
            if parse_error is not None:
                raise parse_error
            assert message is not None
            return self._apply(message, uow, context)

        def on_unstored(_exc: Exception) -> Reply:
            return Reply("error", b"".join(self._not_stored(message)), CONTENT_TYPE)

        return InboundWork(inbound, handle, lambda exc: self._negative(exc, latest[0]), on_unstored)

    def _address_refusal(self, message: Message | None, peer: str) -> MessageProblem | None:
        """The refusal of a message whose claimed sender may not connect from ``peer``.

        MSH-4 is whatever the sender typed: where the connection comes from is the part a
        stranger on the network cannot choose."""
        if message is None or not peer:
            return None
        application, facility = message.get("MSH-3.1"), message.get("MSH-4.1")
        sender = self.profiles.for_sender(application, facility).sender(application, facility)
        address = _host(peer)
        if sender is None or sender.admits(address):
            return None
        log.warning("refused a message claiming sender %s from %s", facility, peer)
        return MessageProblem(
            "AR",
            ErrorDetail(
                "207",
                f"messages from {facility} are accepted only from its configured networks, "
                f"not from {address}",
                application_code="sender_address_refused",
                **_located("MSH-4"),  # type: ignore[arg-type]
            ),
        )

    def _key(self, raw: bytes, message: Message | None) -> str:
        if message is None or not message.control_id:
            return f"{_UNKEYED}{hashlib.sha256(raw).hexdigest()}"
        return (
            f"hl7v2:{message.sending_application}|{message.sending_facility}|{message.control_id}"
        )[:400]

    # --- acknowledgements ---
    def _acks(self, message: Message | None, outcome: AckCode, errors: list[ErrorDetail]) -> bytes:
        """Original mode: one ACK. Enhanced mode: the accept ACK (CA once stored, CR when
        the header is unacceptable) per MSH-15, then the application ACK per MSH-16."""
        build = self._builder(message)
        if ack_mode(message) == "original":
            return build(outcome, errors)
        assert message is not None
        out = b""
        accepted = outcome != "AR"
        accept_code: AckCode = "CA" if accepted else enhanced("AR")
        if wanted(message.get("MSH-15"), accepted):
            out += build(accept_code, [] if accepted else errors)
        if accepted and wanted(message.get("MSH-16"), outcome == "AA"):
            out += build(outcome, errors)
        return out

    def _builder(self, message: Message | None) -> Callable[[AckCode, list[ErrorDetail]], bytes]:
        def build(code: AckCode, errors: list[ErrorDetail]) -> bytes:
            return build_ack(
                message,
                code,
                errors=errors,
                at=self.service.clock(),
                sending_application=self.sending_application,
                sending_facility=self.sending_facility,
            )

        return build

    def _not_stored(self, message: Message | None) -> list[bytes]:
        detail = ErrorDetail(
            "207", "The message could not be stored; nothing was applied. Please send it again."
        )
        code: AckCode = "CE" if ack_mode(message) == "enhanced" else "AE"
        return [self._builder(message)(code, [detail])]

    def _negative(self, exc: Exception, context: Context) -> Reply:
        ack, detail = self._describe(exc, context)
        if isinstance(exc, MessageProblem) and exc.order_id:
            context.order_id = exc.order_id
        body = self._acks(context.message, ack, [detail])
        # AE and AR alike are replayed to a resend with the same control id, unless the
        # gateway itself failed: then the AE asked for the message again.
        status = inbox.FAILED if is_transient(exc) else "rejected"
        return Reply(status, body, CONTENT_TYPE, context.order_id, reason=detail.reason)

    def _describe(self, exc: Exception, context: Context) -> tuple[AckCode, ErrorDetail]:
        where = _located(context.location) if context.location else {}
        if isinstance(exc, MessageProblem):
            return exc.ack, exc.detail
        if isinstance(exc, Er7Error):
            return "AR", ErrorDetail(
                exc.code,
                exc.reason,
                segment=exc.segment,
                sequence=exc.sequence,
                field=exc.field,
                component=exc.component,
            )
        if isinstance(exc, TransitionRefused):
            return "AE", ErrorDetail(
                "207",
                exc.message,
                application_code=exc.code,
                **where,  # type: ignore[arg-type]
            )
        if isinstance(exc, UnknownTherapy):
            return "AE", ErrorDetail("103", exc.message, application_code=exc.code)
        if isinstance(exc, Conflict):
            return "AE", ErrorDetail(
                "205",
                exc.message,
                application_code=exc.code,
                **where,  # type: ignore[arg-type]
            )
        if isinstance(exc, NotFound):
            return "AE", ErrorDetail("204", exc.message, application_code=exc.code)
        if isinstance(exc, VersionMismatch):
            return "AE", ErrorDetail(
                "206",
                "The order changed while this message was applied; please resend.",
                application_code=exc.code,
            )
        if isinstance(exc, (ServiceError, DomainError)):
            return "AE", ErrorDetail("207", str(exc), application_code=exc.code)
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            dotted = ".".join(str(part) for part in first["loc"])
            return "AE", ErrorDetail("102", f"{dotted}: {first['msg']}", **where)  # type: ignore[arg-type]
        return "AE", ErrorDetail(
            "207", "The gateway could not process this message; it has been logged."
        )

    # --- the transaction ---
    def _apply(self, message: Message, uow: UnitOfWork, context: Context) -> Reply:
        profile = self._check_header(message)
        context.profile = profile
        context.site = self.sites.get(profile.site) if profile.site else None
        order_id = self._dispatch[message.message_code](message, uow, context)
        context.order_id = order_id or context.order_id
        body = self._acks(message, "AA", [])
        return Reply("accepted", body, CONTENT_TYPE, context.order_id)

    def _check_header(self, message: Message) -> Profile:
        """The sender's profile, once the header is one we accept."""
        if not message.get("MSH-9.1"):
            raise problem("101", "MSH-9 (message type) is empty", "MSH-9", ack="AR")
        if not message.control_id:
            raise problem("101", "MSH-10 (message control id) is empty", "MSH-10", ack="AR")
        version = message.version
        if not version:
            raise problem("101", "MSH-12 (version id) is empty", "MSH-12", ack="AR")
        if not _VERSION.match(version):
            raise problem(
                "203", f"version {version} is not supported (2.1 to 2.8)", "MSH-12", ack="AR"
            )
        code, trigger = message.message_code, message.trigger
        if code not in SUPPORTED:
            raise problem(
                "200",
                f"message type {code} is not supported; send one of {', '.join(sorted(SUPPORTED))}",
                "MSH-9.1",
                ack="AR",
            )
        if trigger not in SUPPORTED[code]:
            raise problem(
                "201",
                f"{code} {trigger or '(no trigger)'} is not supported; {code} is accepted with "
                f"{', '.join(sorted(SUPPORTED[code]))}",
                "MSH-9.2",
                ack="AR",
            )
        processing = message.get("MSH-11.1").upper() or "P"
        profile = self.profiles.for_sender(message.get("MSH-3.1"), message.get("MSH-4.1"))
        if processing not in profile.quirks.processing_ids:
            raise problem(
                "202",
                f"processing id {processing} is not accepted from this sender "
                f"({', '.join(profile.quirks.processing_ids)})",
                "MSH-11",
                ack="AR",
            )
        return profile

    # --- shared readers ---
    def _site(self, message: Message, context: Context) -> SiteConfig:
        if context.site is None:
            raise problem(
                "103",
                f"sending facility '{message.get('MSH-4.1')}' (application "
                f"'{message.get('MSH-3.1')}') is not a configured site; add it to the "
                "senders of a profile in mappings/hl7v2",
                "MSH-4",
                ack="AR",
            )
        return context.site

    def _tz(self, context: Context) -> tzinfo:
        name = context.site.timezone if context.site else "UTC"
        try:
            return ZoneInfo(name)
        except Exception:
            return UTC

    def _value(self, message: Message, paths: list[str]) -> tuple[str, str]:
        return message.first(paths)

    def _time(self, message: Message, paths: list[str], context: Context) -> datetime | None:
        text, path = message.first(paths)
        if not text:
            return None
        return parse_timestamp(text, self._tz(context), path)

    def _placer(self, message: Message, context: Context) -> tuple[str, str]:
        assert context.profile is not None
        paths = context.profile.fields.placer_number
        placer, path = message.first(paths)
        if not placer:
            raise not_found(message, paths, "the placer order number")
        if context.profile.quirks.uppercase_placer:
            placer = placer.upper()
        return placer, path

    def _existing(self, message: Message, uow: UnitOfWork, context: Context) -> TherapyOrder:
        site = self._site(message, context)
        placer, path = self._placer(message, context)
        order = uow.orders.find_by_identifier("placer", placer, namespace=site.id)
        if order is None:
            raise problem("204", f"no order with placer number {placer} at {site.id}", path)
        context.order_id = order.id
        return order

    def _actor(self, message: Message, paths: list[str], context: Context) -> Actor:
        person, _ = message.first(paths)
        site = context.site.id if context.site else message.get("MSH-4.1")
        return Actor(person=person or None, role="hospital", organisation=site)

    def _event(
        self,
        uow: UnitOfWork,
        context: Context,
        order_id: str,
        event_type: EventType,
        *,
        location: str,
        actor: Actor | None = None,
        at: datetime | None = None,
        **details: object,
    ) -> None:
        context.location = location
        event = LifecycleEvent(
            type=event_type,
            at=at,
            source=Source.HOSPITAL,
            actor=actor or Actor(),
            details=EventDetails(**details),
        )
        self.service.apply_event(order_id, event, actor=self._actor_name(context), uow=uow)

    def _actor_name(self, context: Context) -> str:
        site = context.site.id if context.site else "unknown"
        return f"hl7v2:{site}"

    def patient(self, message: Message, profile: Profile) -> tuple[PatientIdentity, frozenset[str]]:
        """PID → patient identity (PHI: stored apart from the order, shown only to the site),
        with the optional fields the sender explicitly removed: HL7's null, ``""``, means
        "delete the stored value", where an empty field means "not sent, keep it"."""
        if not message.has("PID"):
            raise missing_segment("PID", "the message has no PID segment")
        paths = profile.fields
        mrn, mrn_path = self._mrn(message, profile)
        if not mrn or mrn == HL7_NULL:
            raise problem("101", "the patient's MRN is missing", mrn_path)
        family, family_path = message.first(paths.family_name)
        if not family:
            raise problem("101", "the patient's family name is missing", family_path)
        if family == HL7_NULL:
            raise problem("101", 'the patient\'s family name cannot be removed ("")', family_path)
        cleared: set[str] = set()

        def optional(name: str, candidates: list[str]) -> tuple[str, str]:
            text, path = message.first(candidates)
            if text == HL7_NULL:
                cleared.add(name)
                return "", path
            return text, path

        given, _ = optional("given_name", paths.given_name)
        birth_text, birth_path = optional("birth_date", paths.birth_date)
        birth: date | None = None
        if birth_text:
            birth = parse_date(birth_text, birth_path)
        sex_text, sex_path = optional("sex", paths.sex)
        sex = None
        if sex_text:
            sex = profile.sex.get(sex_text.upper())
            if sex is None:
                raise problem("103", f"administrative sex '{sex_text}' is not mapped", sex_path)
        identity = PatientIdentity(
            mrn=mrn, family_name=family, given_name=given or None, birth_date=birth, sex=sex
        )
        return identity, frozenset(cleared)

    def _mrn(self, message: Message, profile: Profile) -> tuple[str, str]:
        wanted_type = profile.quirks.mrn_identifier_type
        for path in profile.fields.mrn:
            where = parse_path(path)
            segment = message.segment(where.segment, where.occurrence)
            if segment is None:
                continue
            repetitions = segment.repetitions(where.field)
            for index in range(1, len(repetitions) + 1):
                value = segment.value(where.field, index, where.component or 1)
                kind = segment.value(where.field, index, 5)
                if value and (wanted_type is None or kind.upper() == wanted_type.upper()):
                    return value, path
            if wanted_type is not None and repetitions:
                raise problem("101", f"no PID-3 repetition has identifier type {wanted_type}", path)
        return "", profile.fields.mrn[0] if profile.fields.mrn else "PID-3"

    # --- ORM^O01, OMP^O09, RDE^O11 ---
    def _order(self, message: Message, uow: UnitOfWork, context: Context) -> str | None:
        profile = context.profile
        assert profile is not None
        if not message.has("ORC"):
            raise missing_segment("ORC", f"{message.message_type} needs an ORC segment")
        code, code_path = message.first(profile.fields.control_code)
        if not code:
            raise problem("101", "ORC-1 (order control) is empty", code_path)
        action = profile.control_codes.get(code.upper())
        if action is None:
            raise problem(
                "103",
                f"order control code '{code}' is not mapped (known: "
                f"{', '.join(sorted(profile.control_codes))})",
                code_path,
            )
        context.location = code_path
        if action == "ignore":
            return None
        if action == "new_order":
            return self._new_order(message, uow, context)
        order = self._existing(message, uow, context)
        actor = self._actor(message, profile.fields.decided_by, context)
        if action == "cancel":
            reason, _ = message.first(profile.fields.hold_text)
            self._event(
                uow,
                context,
                order.id,
                EventType.CANCEL,
                location=code_path,
                actor=actor,
                reason=reason or f"cancelled by the site (ORC-1 {code})",
            )
        elif action == "place_hold":
            reason_code, _ = message.first(profile.fields.hold_reason)
            text, _ = message.first(profile.fields.hold_text)
            hold_reason = profile.hold_reasons.get(reason_code.upper(), HoldReason.OTHER)
            self._event(
                uow,
                context,
                order.id,
                EventType.PLACE_HOLD,
                location=code_path,
                actor=actor,
                hold_reason=hold_reason,
                reason=text or "hold requested by the site",
            )
        elif action == "release_hold":
            text, _ = message.first(profile.fields.hold_text)
            self._event(
                uow,
                context,
                order.id,
                EventType.RELEASE_HOLD,
                location=code_path,
                actor=actor,
                reason=text or None,
            )
        return order.id

    def _new_order(self, message: Message, uow: UnitOfWork, context: Context) -> str:
        profile = context.profile
        assert profile is not None
        site = self._site(message, context)
        placer, placer_path = self._placer(message, context)
        product, product_path = message.first(profile.fields.product)
        if not product:
            raise not_found(message, profile.fields.product, "the product code")
        therapy = profile.products.get(product)
        if therapy is None:
            raise problem(
                "103",
                f"product code '{product}' is not mapped to a therapy for {site.id}",
                product_path,
            )
        existing = uow.orders.find_by_identifier("placer", placer, namespace=site.id)
        if existing is not None:
            raise problem(
                "205",
                f"placer number {placer} already belongs to order {existing.id}; "
                "send a new number for a new order",
                placer_path,
                ack="AE",
            )
        # An explicit null in an order's PID is read as "not sent": removing what the
        # site knows of a patient is an ADT's business, not a new order's.
        patient, _cleared = self.patient(message, profile)
        clinician_id, _ = message.first(profile.fields.clinician_id)
        family, _ = message.first(profile.fields.clinician_family_name)
        given, _ = message.first(profile.fields.clinician_given_name)
        name = " ".join(part for part in (given, family) if part) or None
        command = CreateOrder(
            patient=patient,
            therapy_code=therapy,
            site=Site(id=site.id, name=site.name, facility_code=site.facility_code),
            clinician=Clinician(id=clinician_id, name=name) if clinician_id else None,
            placer_number=placer,
            planned_infusion_at=self._time(message, profile.fields.planned_infusion, context),
        )
        context.location = placer_path
        order = self.service.create_order(command, actor=self._actor_name(context), uow=uow)
        context.order_id = order.id
        if profile.quirks.enroll_on_new_order:
            code_path = profile.fields.control_code[0]
            self._event(
                uow,
                context,
                order.id,
                EventType.ENROLL,
                location=code_path,
                actor=self._actor(message, profile.fields.decided_by, context),
            )
        return order.id

    # --- OML^O21 (apheresis collection) ---
    def _collection(self, message: Message, uow: UnitOfWork, context: Context) -> str:
        profile = context.profile
        assert profile is not None
        order = self._existing(message, uow, context)
        paths = profile.fields
        actor = self._actor(message, paths.decided_by, context)
        collected_at = self._time(message, paths.collected_at, context)
        scheduled = self._time(message, paths.collection_scheduled, context) or collected_at
        unit_text, unit_path = message.first(paths.collection_unit)
        if message.has("SPM") and collected_at is not None:
            if not unit_text:
                raise problem("101", "the collected unit id (SPM-2) is missing", unit_path)
            unit = Unit(
                unit_id=check_unit_id(unit_text, unit_path),
                kind=UnitKind.APHERESIS,
                collected_at=collected_at,
                volume_ml=self._volume(message, paths.collection_volume),
            )
            if order.state is OrderState.SLOT_CONFIRMED:
                # Without a scheduled time in the message the confirmed one stands: the
                # collection's own time is not what was planned.
                planned = (
                    self._time(message, paths.collection_scheduled, context)
                    or order.milestones.apheresis_at
                    or collected_at
                )
                self._event(
                    uow,
                    context,
                    order.id,
                    EventType.SCHEDULE_APHERESIS,
                    location="SPM-17",
                    actor=actor,
                    apheresis_at=planned,
                )
            self._event(
                uow,
                context,
                order.id,
                EventType.COLLECT,
                location="SPM-17",
                actor=actor,
                at=collected_at,
                unit=unit,
                unit_id=unit.unit_id,
            )
            return order.id
        if scheduled is None:
            raise problem(
                "101",
                "neither a collection time (SPM-17) nor a scheduled time is present",
                paths.collection_scheduled[0],
            )
        self._schedule(uow, context, order, scheduled, actor, paths.collection_scheduled[0])
        return order.id

    def _volume(self, message: Message, paths: list[str]) -> float | None:
        text, path = message.first(paths)
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise problem("102", f"volume '{text}' is not a number", path) from None

    def _schedule(
        self,
        uow: UnitOfWork,
        context: Context,
        order: TherapyOrder,
        when: datetime,
        actor: Actor,
        location: str,
    ) -> None:
        if order.state is OrderState.APHERESIS_SCHEDULED:
            if order.milestones.apheresis_at != when:
                self._event(
                    uow,
                    context,
                    order.id,
                    EventType.RESCHEDULE,
                    location=location,
                    actor=actor,
                    apheresis_at=when,
                )
            return
        self._event(
            uow,
            context,
            order.id,
            EventType.SCHEDULE_APHERESIS,
            location=location,
            actor=actor,
            apheresis_at=when,
        )

    # --- SIU^S12/S13/S14/S15 ---
    def _appointment(self, message: Message, uow: UnitOfWork, context: Context) -> str | None:
        profile = context.profile
        assert profile is not None
        site = self._site(message, context)
        paths = profile.fields
        reference, reference_path = message.first(paths.appointment_order)
        if not reference:
            raise not_found(message, paths.appointment_order, "the order the appointment is for")
        if profile.quirks.uppercase_placer:
            reference = reference.upper()
        order = uow.orders.find_by_identifier("placer", reference, namespace=site.id)
        if order is None:
            raise problem(
                "204", f"no order with placer number {reference} at {site.id}", reference_path
            )
        context.order_id = order.id
        service, service_path = message.first(paths.appointment_service)
        kind = profile.appointment_kinds.get(service.upper())
        if kind is None:
            raise problem("103", f"appointment service '{service}' is not mapped", service_path)
        action = profile.appointment_triggers.get(message.trigger, "ignore")
        actor = self._actor(message, paths.decided_by, context)
        if kind == "infusion" or action == "ignore":
            # No canonical event moves a planned infusion; the stored message is the record.
            return order.id
        start = self._time(message, paths.appointment_start, context)
        if action == "cancel":
            self._event(
                uow,
                context,
                order.id,
                EventType.PLACE_HOLD,
                location="MSH-9.2",
                actor=actor,
                hold_reason=HoldReason.OTHER,
                reason="apheresis appointment cancelled by the site",
            )
            return order.id
        if start is None:
            raise problem(
                "101", "the appointment start time is missing", paths.appointment_start[0]
            )
        if action == "reschedule" and order.state is OrderState.APHERESIS_SCHEDULED:
            self._event(
                uow,
                context,
                order.id,
                EventType.RESCHEDULE,
                location="MSH-9.2",
                actor=actor,
                apheresis_at=start,
            )
        else:
            self._schedule(uow, context, order, start, actor, paths.appointment_start[0])
        return order.id

    # --- ADT^A04/A08/A31 ---
    def _patient(self, message: Message, uow: UnitOfWork, context: Context) -> None:
        profile = context.profile
        assert profile is not None
        site = self._site(message, context)
        identity, cleared = self.patient(message, profile)
        self.service.register_patient(
            uow,
            site.id,
            identity,
            actor=self._actor_name(context),
            at=self.service.clock(),
            cleared=cleared,
        )
        return None

    # --- RAS^O17 ---
    def _administration(self, message: Message, uow: UnitOfWork, context: Context) -> str:
        profile = context.profile
        assert profile is not None
        order = self._existing(message, uow, context)
        paths = profile.fields
        status, status_path = message.first(paths.administration_status)
        action = profile.administration_status.get((status or "CP").upper())
        if action is None:
            raise problem("103", f"completion status '{status}' is not mapped", status_path)
        if action == "ignore":
            return order.id
        at = self._time(message, paths.administered_at, context)
        self._event(
            uow,
            context,
            order.id,
            EventType.INFUSE,
            location=paths.administered_at[0],
            actor=self._actor(message, paths.administered_by, context),
            at=at,
        )
        return order.id


def control_id_of(key: str) -> str | None:
    """The MSH-10 a stored message's inbox key ends with (see ``InboundHandler._key``);
    None for a message keyed by its bytes."""
    if not key.startswith(f"{CHANNEL}:") or key.startswith(_UNKEYED):
        return None
    return key.rsplit("|", 1)[-1] or None


def parse_timestamp(text: str, tz: tzinfo, path: str, *, sent: str | None = None) -> datetime:
    """HL7 DTM (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``); no offset means site time.
    An error quotes ``sent``, the whole value as the sender wrote it, when ``text`` is
    only part of it."""
    quoted = text if sent is None else sent
    match = _DTM.match(text.strip())
    if match is None:
        raise problem("102", f"'{quoted}' is not an HL7 date/time", path)
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
        )
    except ValueError:
        raise problem("102", f"'{quoted}' is not a valid date/time", path) from None
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        return moment.replace(tzinfo=timezone(offset if sign == "+" else -offset))
    return moment.replace(tzinfo=tz)


def parse_date(text: str, path: str) -> date:
    """The date of an HL7 DT or DTM (``YYYY[MM[DD]]…``); any time in it is ignored."""
    head = text[:8]
    if len(head) == 8 and head.isascii() and head.isdigit():
        # Nearly every birth date is sent as eight digits; the general reader costs several
        # times more, on every patient message.
        try:
            return date(int(head[:4]), int(head[4:6]), int(head[6:]))
        except ValueError:
            raise problem("102", f"'{text}' is not a valid date/time", path) from None
    return parse_timestamp(head, UTC, path, sent=text).date()


def check_unit_id(text: str, path: str) -> str:
    """A 13-character DIN-style unit id, optionally followed by its Mod 37-2 check
    character, which must then be right: a mistyped unit id is an identity error."""
    from labeling.checkchar import check_character

    # Never upper-cased: a lower-case read is a scanner or keyboard fault to fix, and a
    # case-folded id could name another unit.
    compact = text.replace(" ", "")
    if not _UNIT_ID.fullmatch(compact):
        raise problem(
            "102",
            f"unit id '{text}' must be 13 upper-case letters/digits, optionally with its check "
            "character",
            path,
        )
    din = compact[:13]
    if len(compact) == 14:
        expected = check_character(din)
        if compact[13] != expected:
            raise problem(
                "102",
                f"unit id {din}: check character '{compact[13]}' is wrong (expected "
                f"'{expected}'); re-scan the bag label",
                path,
            )
    return din
