"""Outbound HL7 v2: order-status messages from the outbox to the hospital's EHR.

Which message a change becomes is the site profile's decision (``outbound`` in
``mappings/hl7v2/<profile>.yaml``):

* the response to a new order (``response_events``): ORR^O02, or ORP^O10 pharmacy style,
  whose MSA-2 is the MSH-10 of the HL7 message that placed the order (its placer number
  when the order came some other way);
* a dispense (``dispense_events``): RDS^O13, or BPS^O29 blood-bank style, whose BPX-2
  carries the HL7 table 0510 dispense status (blood-bank style sends BPS for every event
  in ``dispense_status``);
* every other change: ORM^O01 / OMP^O09 with ORC-1 ``SC`` and ORC-5 from ``order_status``.

ORC-5 follows the status *at the time of the event* (from the outbox payload), not the
order's current state, so a late delivery never reports a status the order had not yet
reached. MSH-10 is derived from the outbox item id, so the relay's retries reuse it and
the EHR can deduplicate. Only the hospital's own EHR gets a PID with name, DOB and MRN.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from adapters.hl7v2.ack import hl7_timestamp
from adapters.hl7v2.er7 import (
    FieldValue,
    codec_for,
    encode_message,
    encode_segment,
    nearest_letters,
    parse,
)
from adapters.hl7v2.inbound import CHANNEL, control_id_of
from adapters.hl7v2.mapping import (
    OutboundProfile,
    Profile,
    ProfileBook,
    load_profiles,
    outbound_tls,
)
from adapters.hl7v2.mllp import MllpClient, MllpError
from adapters.hl7v2.tls import MllpSettingsError
from gateway.domain.model import TherapyOrder
from gateway.domain.patient import PatientIdentity
from gateway.service.errors import NotFound
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Transport
from gateway.sites import SiteConfig, SiteDirectory
from gateway.store.outbox import OutboxItem

log = logging.getLogger(__name__)

APPLICATION_TIME = "%Y%m%d%H%M%S"
#: The responses to a new order: they carry an MSA naming the order message answered.
RESPONSE_KINDS = frozenset({"ORR_O02", "ORP_O10"})


def control_id_for(item: OutboxItem) -> str:
    """Stable across retries of the same outbox item; 20 characters at most."""
    return f"V2VOB{item.id:015d}"


def message_kind(profile: OutboundProfile, event: str) -> str:
    """The HL7 structure (e.g. ``ORM_O01``) a change is sent as."""
    style = profile.style
    if style == "blood_bank" and (
        event in profile.dispense_status or event in profile.dispense_events
    ):
        return "BPS_O29"
    if event in profile.dispense_events:
        return "RDS_O13"
    if event in profile.response_events:
        return "ORP_O10" if style == "pharmacy" else "ORR_O02"
    return "OMP_O09" if style == "pharmacy" else "ORM_O01"


def render(
    item: OutboxItem,
    profile: Profile,
    order: TherapyOrder | None,
    patient: PatientIdentity | None,
    *,
    at: datetime,
    control_id: str | None = None,
    answering: str | None = None,
) -> bytes:
    """Render one outbox notice as the ER7 message the site's profile asks for."""
    out = profile.outbound
    payload: dict[str, Any] = item.payload
    event = str(payload.get("event", ""))
    kind = message_kind(out, event)
    code, trigger = kind.split("_")
    external = payload.get("external_ids") or {}
    placer = external.get("placer_number") or (order.external_ids.placer_number if order else "")
    status = str(payload.get("status") or payload.get("state") or "")
    orc5 = out.order_status.get(status) or out.order_status.get(str(payload.get("state", "")))
    stamp = hl7_timestamp(at)
    segments = [
        encode_segment(
            "MSH",
            [
                out.sending_application,
                out.sending_facility,
                out.receiving_application,
                out.receiving_facility,
                stamp,
                None,
                [code, trigger, kind],
                control_id or control_id_for(item),
                "P",
                out.version,
                *([None] * 5 + [out.charset] if out.charset else []),
            ],
        )
    ]
    if kind in RESPONSE_KINDS:
        # MSA-2 names the order message answered; an order placed some other way (FHIR,
        # the API) was never an HL7 message, and its placer number is the best reference.
        segments.append(
            encode_segment("MSA", ["AA", answering or placer or payload.get("order_id", "")])
        )
    codec = codec_for(out.charset) or "utf-8"
    if out.include_patient and patient is not None:
        segments.append(_pid(patient, codec))
    order_control = {"ORR_O02": "OK", "ORP_O10": "OK", "RDS_O13": "RE", "BPS_O29": "SC"}.get(
        kind, "SC"
    )
    filler = payload.get("coi") or payload.get("order_id")
    product: FieldValue = _product(order, payload)
    segments.append(
        encode_segment(
            "ORC",
            [
                order_control,
                [placer or "", out.receiving_application or ""],
                [str(filler or ""), "V2V"],
                None,
                orc5,
                None,
                None,
                None,
                stamp,
            ],
        )
    )
    if kind == "RDS_O13":
        segments.append(encode_segment("RXE", [None, product, "1", None, "bag"]))
        segments.append(encode_segment("RXD", ["1", product, stamp, "1", "bag", None, placer]))
    elif kind == "BPS_O29":
        dispense = next((v for k, v in out.dispense_status.items() if k.value == event), "")
        units = order.final_products() if order else []
        segments.append(encode_segment("BPO", ["1", product, None, "1"]))
        for index, unit in enumerate(units or [None], start=1):
            segments.append(
                encode_segment(
                    "BPX",
                    [
                        "1" if index == 1 else str(index),
                        [dispense, "", "HL70510"],
                        stamp,
                        unit.unit_id if unit else None,
                        unit.product_code if unit else None,
                    ],
                )
            )
    segments.append(
        encode_segment(
            "ZV2",
            [
                str(payload.get("order_id", "")),
                str(payload.get("coi") or ""),
                status,
                event,
                str(payload.get("version", "")),
            ],
        )
    )
    # A character the site's set cannot hold is sent as "?" (names: their nearest letter).
    return encode_message(segments, codec)


def _pid(patient: PatientIdentity, codec: str) -> str:
    birth = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else None
    return encode_segment(
        "PID",
        [
            "1",
            None,
            [patient.mrn, "", "", "", "MR"],
            None,
            [
                nearest_letters(patient.family_name, codec),
                nearest_letters(patient.given_name or "", codec),
            ],
            None,
            birth,
            patient.sex,
        ],
    )


def _product(order: TherapyOrder | None, payload: dict[str, Any]) -> FieldValue:
    if order is None:
        return [str(payload.get("therapy", "")), "", "V2V"]
    return [order.therapy.product_code or order.therapy.code, order.therapy.name, "V2V"]


def _placing_control_id(service: OrderService, order_id: str) -> str | None:
    """MSH-10 of the HL7 message that placed the order, if one did."""
    key = service.placing_message_key(order_id, CHANNEL)
    return control_id_of(key) if key is not None else None


def _endpoint(site: SiteConfig) -> tuple[str, int]:
    endpoint = site.outbound.endpoint or ""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise DeliveryError(
            f"site {site.id} has no usable MLLP endpoint ({endpoint!r}); set outbound.endpoint "
            "to host:port",
            permanent=True,
        )
    return host, int(port)


def transport(
    sites: SiteDirectory,
    service: OrderService,
    *,
    profiles: ProfileBook | None = None,
    backoff: float = 0.5,
) -> Transport:
    """The relay transport for ``hospital:<site>`` destinations whose site speaks HL7 v2.

    Raises :class:`DeliveryError` on a negative ACK or no ACK (``permanent=True`` on AR/CR:
    the EHR will never accept this message as it is).
    """
    book = profiles or load_profiles()
    clients: dict[tuple[str, int], MllpClient] = {}
    lock = threading.Lock()

    def deliver(item: OutboxItem) -> None:
        _prefix, _, site_id = item.destination.partition(":")
        site = sites.get(site_id)
        if site is None:
            raise DeliveryError(f"no site '{site_id}' in mappings/sites", permanent=True)
        if site.outbound.protocol != "hl7v2":
            raise DeliveryError(
                f"site {site_id} speaks {site.outbound.protocol}, not hl7v2", permanent=True
            )
        profile = book.get(site.outbound.profile or "") or book.default
        host, port = _endpoint(site)
        order: TherapyOrder | None = None
        patient: PatientIdentity | None = None
        if item.order_id:
            try:
                order = service.get(item.order_id)
            except NotFound:
                order = None
            if profile.outbound.include_patient:
                patient = service.patient_of(item.order_id)
        answering = None
        kind = message_kind(profile.outbound, str(item.payload.get("event", "")))
        if item.order_id and kind in RESPONSE_KINDS:
            answering = _placing_control_id(service, item.order_id)
        message = render(item, profile, order, patient, at=service.clock(), answering=answering)
        with lock:
            client = clients.get((host, port))
            if client is None:
                try:
                    tls = outbound_tls(site)
                except MllpSettingsError as exc:
                    # Every message to this site would fail alike until its file is mended.
                    raise DeliveryError(f"site {site_id}: {exc}", permanent=True) from exc
                client = MllpClient(
                    host,
                    port,
                    timeout=profile.outbound.ack_timeout_seconds,
                    attempts=profile.outbound.attempts,
                    backoff=backoff,
                    tls=tls,
                )
                clients[(host, port)] = client
            try:
                reply = client.send(message)
            except MllpError as exc:
                raise DeliveryError(str(exc)) from exc
        ack = parse(reply)
        msa = ack.segment("MSA")
        code = msa.value(1).upper() if msa else ""
        if code in ("AA", "CA"):
            return
        err = ack.segment("ERR")
        reason = (err.value(8) or err.value(3, 1, 2)) if err else ""
        text = (msa.value(3) if msa else "") or reason
        raise DeliveryError(
            f"{site_id} answered {code or 'without MSA'}: {text}".strip(),
            permanent=code in ("AR", "CR"),
        )

    return deliver
