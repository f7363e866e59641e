"""HL7 v2 site profiles: ``mappings/hl7v2/<profile>.yaml``.

``default.yaml`` says how a typical v2.5 interface engine sends cell-therapy orders. A
hospital's file holds only what differs (its senders, its product codes, the field its
engine misuses), and is laid over the default key by key; lists replace, maps merge.
A broken file is rejected at load with its file, line and reason, and ``v2v mappings
check`` validates every profile, including its codes against HL7 tables (via hl7apy) and
its therapy and site references.
"""

from __future__ import annotations

import copy
import ssl
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
)

from adapters.hl7v2.er7 import CHARSETS, codec_for, parse_path
from adapters.hl7v2.tls import MllpSettingsError, client_context
from gateway import mapping_check
from gateway.domain.model import HoldReason
from gateway.domain.states import EventType, OrderState
from gateway.mapping_files import MappingFileError, line_of, load_yaml, mappings_dir
from gateway.sites import SiteConfig

DEFAULT_PROFILE = "default"

OrderAction = Literal["new_order", "cancel", "place_hold", "release_hold", "ignore"]
AppointmentAction = Literal["book", "reschedule", "cancel", "ignore"]
AppointmentKind = Literal["apheresis", "infusion"]
Style = Literal["order", "pharmacy", "blood_bank"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Paths = list[str]


def _check_paths(value: list[str]) -> list[str]:
    for path in value:
        parse_path(path)
    return value


class Sender(_Strict):
    """How this hospital's messages are recognised: MSH-4.1 and, optionally, MSH-3.1."""

    facility: str = Field(min_length=1)
    application: str | None = None
    networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Addresses (CIDR) the sender's connections come from; empty: any",
    )

    def admits(self, address: str) -> bool:
        """Whether a connection from ``address`` may speak for this sender."""
        if not self.networks:
            return True
        try:
            peer = ip_address(address)
        except ValueError:
            return False
        # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
        if isinstance(peer, IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)


class FieldPaths(_Strict):
    """Where each value is read from; the first non-empty path wins."""

    control_code: Paths = ["ORC-1"]
    placer_number: Paths = ["ORC-2.1", "OBR-2.1"]
    product: Paths = ["RXO-1.1", "RXE-2.1", "OBR-4.1"]
    clinician_id: Paths = ["ORC-12.1", "OBR-16.1"]
    clinician_family_name: Paths = ["ORC-12.2", "OBR-16.2"]
    clinician_given_name: Paths = ["ORC-12.3", "OBR-16.3"]
    decided_by: Paths = ["ORC-19.2", "ORC-11.2", "ORC-10.2", "ORC-12.2"]
    hold_reason: Paths = ["ORC-16.1"]
    hold_text: Paths = ["ORC-16.2", "ORC-16.1"]
    planned_infusion: Paths = ["TQ1-7", "ORC-7.4"]
    mrn: Paths = ["PID-3"]
    family_name: Paths = ["PID-5.1"]
    given_name: Paths = ["PID-5.2"]
    birth_date: Paths = ["PID-7"]
    sex: Paths = ["PID-8"]
    collection_scheduled: Paths = ["TQ1-7", "OBR-7", "ORC-7.4"]
    collection_unit: Paths = ["SPM-2.1.1", "SPM-2.1"]
    collected_at: Paths = ["SPM-17.1", "SPM-17"]
    collection_volume: Paths = ["SPM-12.1"]
    appointment_order: Paths = ["SCH-26.1", "SCH-1.1"]
    appointment_service: Paths = ["AIS-3.1", "SCH-7.1"]
    appointment_start: Paths = ["AIS-4", "TQ1-7", "SCH-11.4"]
    administered_at: Paths = ["RXA-3"]
    administration_status: Paths = ["RXA-20"]
    administered_by: Paths = ["RXA-10.2"]

    @field_validator("*")
    @classmethod
    def _valid_paths(cls, value: list[str]) -> list[str]:
        return _check_paths(value)


class Quirks(_Strict):
    """Per-sender habits that are not worth a code change."""

    mrn_identifier_type: str | None = Field(
        default="MR", description="Pick the PID-3 repetition with this CX-5; none: the first"
    )
    enroll_on_new_order: bool = Field(
        default=True, description="A new order (NW) is also the enrolment: issue the CoI"
    )
    uppercase_placer: bool = False
    processing_ids: list[str] = ["P", "T", "D"]


class OutboundProfile(_Strict):
    style: Style = "order"
    version: str = "2.5.1"
    sending_application: str = "VEIN2VEIN"
    sending_facility: str = "V2V"
    receiving_application: str = ""
    receiving_facility: str = ""
    include_patient: bool = Field(
        default=True, description="PID with name, DOB and MRN: only ever to the site's own EHR"
    )
    order_status: dict[str, str] = Field(
        default_factory=dict, description="Order state (or ON_HOLD) → ORC-5 (HL7 table 0038)"
    )
    response_events: list[EventType] = Field(
        default_factory=list, description="Events answered with ORR^O02 / ORP^O10"
    )
    dispense_events: list[EventType] = Field(
        default_factory=list, description="Events that send RDS^O13 (or BPS^O29 blood-bank)"
    )
    dispense_status: dict[EventType, str] = Field(
        default_factory=dict, description="Event → BPX-2 dispense status (HL7 table 0510)"
    )
    ack_timeout_seconds: float = Field(default=10.0, gt=0)
    attempts: int = Field(default=3, ge=1, le=10)
    charset: str = Field(
        default="",
        description="MSH-18 (HL7 table 0211) the site's engine reads, e.g. 8859/1: our "
        "messages are written in it and say so; empty: UTF-8 with MSH-18 left empty",
    )

    @field_validator("charset")
    @classmethod
    def _charset(cls, value: str) -> str:
        if value and codec_for(value) is None:
            raise ValueError(
                f"'{value}' is not a character set we write (one of {sorted(CHARSETS)})"
            )
        return value

    @field_validator("order_status")
    @classmethod
    def _states(cls, value: dict[str, str]) -> dict[str, str]:
        known = {state.value for state in OrderState} | {"ON_HOLD"}
        for key in value:
            if key not in known:
                raise ValueError(f"'{key}' is not an order state (known: {sorted(known)})")
        return value


class Profile(_Strict):
    profile: str
    site: str | None = Field(default=None, description="Site id in mappings/sites")
    senders: list[Sender] = Field(default_factory=list)
    fields: FieldPaths = Field(default_factory=FieldPaths)
    control_codes: dict[str, OrderAction] = Field(default_factory=dict)
    products: dict[str, str] = Field(
        default_factory=dict, description="Product code as sent → therapy code"
    )
    hold_reasons: dict[str, HoldReason] = Field(default_factory=dict)
    sex: dict[str, Literal["F", "M", "O", "U"]] = Field(default_factory=dict)
    appointment_kinds: dict[str, AppointmentKind] = Field(default_factory=dict)
    appointment_triggers: dict[str, AppointmentAction] = Field(default_factory=dict)
    administration_status: dict[str, Literal["infuse", "ignore"]] = Field(default_factory=dict)
    quirks: Quirks = Field(default_factory=Quirks)
    outbound: OutboundProfile = Field(default_factory=OutboundProfile)

    def matches(self, application: str, facility: str) -> bool:
        return self.sender(application, facility) is not None

    def sender(self, application: str, facility: str) -> Sender | None:
        """The entry of :attr:`senders` that MSH-3.1/MSH-4.1 name, if any."""
        for sender in self.senders:
            if sender.facility.upper() == facility.upper() and (
                sender.application is None or sender.application.upper() == application.upper()
            ):
                return sender
        return None


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(override)


@dataclass(frozen=True)
class _Source:
    path: Path
    data: dict[str, Any]
    node: yaml.Node | None


def _read(path: Path) -> _Source:
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise MappingFileError(path, 1, "the file must hold a mapping (key: value) at the top")
    return _Source(path, data, node)


def _validate(source: _Source, base: _Source | None) -> Profile:
    data = _merge(base.data, source.data) if base is not None else source.data
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = tuple(first["loc"])
        dotted = ".".join(str(part) for part in location) or "(top level)"
        here = source
        if base is not None and not _has(source.data, location):
            here = base
        raise MappingFileError(
            here.path, line_of(here.node, location), f"{dotted}: {first['msg']}"
        ) from exc


def _has(data: Any, location: tuple[int | str, ...]) -> bool:
    for key in location:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and key < len(data)
        if in_dict or in_list:
            data = data[key]
        else:
            return False
    return True


#: Senders remembered by ProfileBook.for_sender; a flood of made-up names cannot grow it.
_SENDERS_KEPT = 1024


@dataclass(frozen=True)
class ProfileBook:
    profiles: dict[str, Profile]
    # Every inbound message asks; the answer only changes when the files are loaded again.
    _chosen: dict[tuple[str, str], Profile] = field(default_factory=dict, compare=False, repr=False)

    @property
    def default(self) -> Profile:
        return self.profiles[DEFAULT_PROFILE]

    def get(self, name: str) -> Profile | None:
        return self.profiles.get(name)

    def for_sender(self, application: str, facility: str) -> Profile:
        """The profile whose senders list MSH-3.1/MSH-4.1; the default when none does."""
        key = (application, facility)
        chosen = self._chosen.get(key)
        if chosen is None:
            if len(self._chosen) >= _SENDERS_KEPT:
                self._chosen.clear()
            chosen = self._chosen[key] = self._match(application, facility)
        return chosen

    def _match(self, application: str, facility: str) -> Profile:
        for name, profile in sorted(self.profiles.items()):
            if name != DEFAULT_PROFILE and profile.matches(application, facility):
                return profile
        return self.default

    def for_site(self, site_id: str) -> Profile | None:
        return next((p for p in self.profiles.values() if p.site == site_id), None)


def load_profiles(directory: Path | None = None) -> ProfileBook:
    """Load and validate every profile in ``<mappings>/hl7v2``."""
    folder = (directory or mappings_dir()) / "hl7v2"
    default_path = folder / f"{DEFAULT_PROFILE}.yaml"
    if not default_path.exists():
        raise MappingFileError(default_path, None, "the default HL7 v2 profile is missing")
    base = _read(default_path)
    profiles = {DEFAULT_PROFILE: _validate(base, None)}
    for path in sorted(folder.glob("*.yaml")):
        if path == default_path:
            continue
        source = _read(path)
        profile = _validate(source, base)
        if profile.profile != path.stem:
            raise MappingFileError(
                path,
                line_of(source.node, ("profile",)),
                f"profile '{profile.profile}' must match the file name",
            )
        profiles[profile.profile] = profile
    return ProfileBook(profiles)


def _hl7_table(name: str) -> set[str] | None:
    try:
        from hl7apy.v2_5 import tables
    except ImportError:  # pragma: no cover - hl7apy is a declared dependency
        return None
    entry = tables.TABLES.get(name)
    return set(entry[1]) if entry else None


def _message_exists(structure: str, version: str) -> bool:
    from hl7apy.core import Message

    try:
        Message(structure, version=version)
    except Exception:
        return False
    return True


def check(folder: Path) -> int:
    """``v2v mappings check``: load every profile and cross-check its references."""
    from gateway.sites import load_sites
    from gateway.therapy_rules import load_rule_book

    book = load_profiles(folder)
    hl7 = folder / "hl7v2"
    therapies = set(load_rule_book(folder).codes())
    sites = load_sites(folder)
    control = _hl7_table("HL70119") or set()
    status = _hl7_table("HL70038") or set()
    dispense = _hl7_table("HL70510") or set()
    senders: dict[tuple[str, str | None], str] = {}
    for name, profile in book.profiles.items():
        path = hl7 / f"{name}.yaml"
        node = _read(path).node

        def fail(
            location: tuple[int | str, ...],
            reason: str,
            _p: Path = path,
            _n: yaml.Node | None = node,
        ) -> MappingFileError:
            return MappingFileError(_p, line_of(_n, location), reason)

        if profile.site is not None and sites.get(profile.site) is None:
            raise fail(("site",), f"site '{profile.site}' has no file in mappings/sites")
        for product, therapy in profile.products.items():
            if therapy not in therapies:
                raise fail(
                    ("products", product), f"product {product} maps to unknown therapy '{therapy}'"
                )
        for code in profile.control_codes:
            if control and code not in control:
                raise fail(("control_codes", code), f"'{code}' is not in HL7 table 0119")
        for state, code in profile.outbound.order_status.items():
            if status and code not in status:
                raise fail(
                    ("outbound", "order_status", state),
                    f"'{code}' is not an order status in HL7 table 0038",
                )
        for event, code in profile.outbound.dispense_status.items():
            if dispense and code not in dispense:
                raise fail(
                    ("outbound", "dispense_status", event.value),
                    f"'{code}' is not a dispense status in HL7 table 0510",
                )
        version = profile.outbound.version
        for structure in _structures(profile.outbound.style):
            if not _message_exists(structure, version):
                raise fail(("outbound", "version"), f"{structure} does not exist in HL7 v{version}")
        for index, sender in enumerate(profile.senders):
            key = (sender.facility.upper(), (sender.application or "").upper() or None)
            if key in senders:
                raise fail(
                    ("senders", index),
                    f"sender {sender.facility} is already claimed by {senders[key]}",
                )
            senders[key] = name
    for site in sites.sites.values():
        if site.outbound.protocol == "hl7v2" and book.get(site.outbound.profile or "") is None:
            raise MappingFileError(
                folder / "sites" / f"{site.id}.yaml",
                None,
                f"outbound profile '{site.outbound.profile}' has no file in mappings/hl7v2",
            )
        if site.outbound.tls is not None:
            path = folder / "sites" / f"{site.id}.yaml"
            try:
                outbound_tls(site)
            except MllpSettingsError as exc:
                _data, site_node = load_yaml(path)
                raise MappingFileError(
                    path, line_of(site_node, ("outbound", "tls")), str(exc)
                ) from exc
    return len(book.profiles)


def outbound_tls(site: SiteConfig) -> ssl.SSLContext | None:
    """The TLS context for MLLP to ``site``'s EHR, or None for plain MLLP."""
    tls = site.outbound.tls
    if tls is None:
        return None
    return client_context(tls.ca, tls.cert, tls.key, where="outbound.tls.")


def _structures(style: Style) -> tuple[str, ...]:
    if style == "pharmacy":
        return ("OMP_O09", "ORP_O10", "RDS_O13")
    if style == "blood_bank":
        return ("ORM_O01", "ORR_O02", "BPS_O29")
    return ("ORM_O01", "ORR_O02", "RDS_O13")


mapping_check.register("hl7v2", check)
