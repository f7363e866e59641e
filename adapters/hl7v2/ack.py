"""Acknowledgements: AA/AE/AR (original mode) and CA/CE/CR (enhanced mode) with ERR.

ACKs sit on the hot path, so they are written with the ER7 writer rather than hl7apy;
``tests/hl7v2`` parses them back with hl7apy to keep them standard. An ERR segment says
what was wrong and where in both the v2.5+ form (ERR-2 location, ERR-3 table 0357 code,
ERR-4 severity, ERR-5 our refusal code, ERR-8 a sentence for a person) and, for senders on
v2.3/2.4, the older ERR-1 form; MSA-3 repeats the sentence for engines that show only it.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from adapters.hl7v2.er7 import (
    Component,
    FieldValue,
    Message,
    codec_for,
    encode_field,
    encode_message,
    encode_segment,
)
from adapters.hl7v2.escapes import STANDARD, Separators, escape

AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]

#: HL7 table 0357, message error condition codes.
TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}
_counter = itertools.count(1)
_PROCESS = f"{os.getpid() % 100000:05d}"


@dataclass(frozen=True)
class ErrorDetail:
    """One problem, located the way ERR-2 (ERL) locates it."""

    code: str  # table 0357
    reason: str
    segment: str = ""
    sequence: int = 1
    field: int | None = None
    component: int | None = None
    application_code: str | None = None  # our stable refusal code, e.g. order_on_hold
    severity: str = "E"

    @property
    def where(self) -> str:
        if not self.segment:
            return "message"
        text = self.segment + (f"-{self.field}" if self.field else "")
        return text + (f".{self.component}" if self.component else "")


def new_control_id(prefix: str = "V2V") -> str:
    """Unique per process and time; 20 characters fit MSH-10 in every version."""
    return f"{prefix}{int(time.time() * 1000) % 10**10:010d}{_PROCESS}{next(_counter) % 100:02d}"


def hl7_timestamp(at: datetime | None = None) -> str:
    return _utc_second(math.floor((at or datetime.now(UTC)).timestamp()))


@lru_cache(maxsize=8)
def _utc_second(epoch: int) -> str:
    # Every ACK carries one; within a second they are all the same string.
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch)) + "+0000"


@lru_cache(maxsize=64)
def _version_tuple(version: str) -> tuple[int, ...]:
    # Asked for every ACK; senders use a handful of versions.
    numbers = re.findall(r"\d+", version)
    return tuple(int(n) for n in numbers[:3]) if numbers else (2, 5, 1)


def uses_err_location(version: str) -> bool:
    """ERR-2..ERR-8 exist from v2.5; earlier versions carry ERR-1 (ELD) only."""
    return _version_tuple(version) >= (2, 5)


def ack_mode(message: Message | None) -> Literal["original", "enhanced"]:
    if message is None:
        return "original"
    msh = message.msh
    if not (msh.raw(15) or msh.raw(16)):
        return "original"  # the common case, told without reading the fields' values
    if message.get("MSH-15") or message.get("MSH-16"):
        return "enhanced"
    return "original"


def wanted(condition: str, success: bool) -> bool:
    """Whether MSH-15/16's condition (AL, NE, ER, SU; empty = AL) asks for this ACK."""
    condition = condition.upper() or "AL"
    if condition == "NE":
        return False
    if condition == "ER":
        return not success
    if condition == "SU":
        return success
    return True


def _err_segment(error: ErrorDetail, version: str, seps: Separators) -> str:
    code_text = TABLE_0357.get(error.code, "")
    if not uses_err_location(version):
        eld: list[Component] = [
            error.segment,
            str(error.sequence) if error.segment else "",
            str(error.field) if error.field else "",
            [error.code, code_text, "HL70357"],
        ]
        return encode_segment("ERR", [eld], seps)
    location: list[Component] = (
        [
            error.segment,
            str(error.sequence),
            str(error.field) if error.field else "",
            "1" if error.field else "",
            str(error.component) if error.component else "",
        ]
        if error.segment
        else []
    )
    application: FieldValue = (
        [error.application_code, "", "V2V"] if error.application_code else None
    )
    return encode_segment(
        "ERR",
        [
            None,
            location,
            [error.code, code_text, "HL70357"],
            error.severity,
            application,
            None,
            None,
            error.reason,
        ],
        seps,
    )


def build_ack(
    inbound: Message | None,
    code: AckCode,
    *,
    errors: Sequence[ErrorDetail] = (),
    sending_application: str = "VEIN2VEIN",
    sending_facility: str = "V2V",
    at: datetime | None = None,
    control_id: str | None = None,
) -> bytes:
    """An acknowledgement of ``inbound`` (None when its MSH could not be read)."""
    if inbound is not None:
        seps, version = inbound.seps, inbound.version or "2.5.1"
        trigger = inbound.get("MSH-9.2")
        # The inbound MSH's fields as sent, padded so that any of the first 19 can be read
        # by index: an ACK is written for every message.
        sent = inbound.msh.fields
        if len(sent) < 19:
            sent = [*sent, *_NO_FIELDS[len(sent) :]]
    else:
        seps, version, trigger, sent = STANDARD, "2.5.1", "", _NO_FIELDS

    # The answer is written in the character set the message declared, and says so.
    charset = sent[18].partition(seps.repetition)[0]
    codec = codec_for(charset)

    # MSH and MSA are joined by hand (values copied from the inbound MSH stay as sent, ours
    # are escaped): an ACK is written for every message, and the general field encoder
    # costs several times more.
    header = _join(
        seps,
        "MSH",
        seps.encoding_characters,
        escape(sending_application, seps),
        escape(sending_facility, seps),
        sent[3],
        sent[4],
        hl7_timestamp(at),
        "",
        seps.component.join(("ACK", escape(trigger, seps), "ACK")[: _type_parts(version)]),
        escape(control_id or new_control_id("ACK"), seps),
        sent[11] or "P",
        sent[12] or escape(version, seps),
        *(("", "", "", "", "", charset) if codec else ()),
    )
    reason = "; ".join(f"{e.where}: {e.reason}" for e in errors)
    msa = _join(
        seps,
        "MSA",
        escape(code, seps),
        escape(inbound.control_id, seps) if inbound is not None else "",
        escape(reason[:200], seps),
    )
    segments = [header, msa, *(_err_segment(error, version, seps) for error in errors)]
    return encode_message(segments, codec or "utf-8")


_NO_FIELDS = [""] * 19


def _type_parts(version: str) -> int:
    """MSH-9 components: the message structure (MSH-9.3) exists from v2.3.1 on."""
    return 3 if _version_tuple(version) >= (2, 3, 1) else 2


def _join(seps: Separators, *fields: str) -> str:
    """One segment from rendered fields, without trailing empty fields."""
    return seps.field.join(fields).rstrip(seps.field)


def enhanced(code: str) -> AckCode:
    return _ENHANCED[code]  # type: ignore[return-value]


def split_messages(body: bytes) -> list[bytes]:
    """Split stored replies (one or more ER7 messages back to back) into messages; on the
    bytes, as each keeps the character set of the message it answers."""
    if body.startswith(b"MSH") and b"\rMSH" not in body:
        return [body]  # one message: every original-mode ACK
    starts = [m.start() for m in re.finditer(rb"(?:^|\r)MSH", body)]
    if not starts:
        return [body] if body else []
    pieces = []
    for index, start in enumerate(starts):
        begin = start + (1 if body[start : start + 1] == b"\r" else 0)
        end = starts[index + 1] + 1 if index + 1 < len(starts) else len(body)
        pieces.append(body[begin:end])
    return pieces


__all__ = [
    "TABLE_0357",
    "AckCode",
    "ErrorDetail",
    "ack_mode",
    "build_ack",
    "encode_field",
    "enhanced",
    "hl7_timestamp",
    "new_control_id",
    "split_messages",
    "wanted",
]
