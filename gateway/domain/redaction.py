"""Keeping a patient's identifiers out of free text that partners will read.

An order is shared with its manufacturer and courier, and so is the text staff type into
it: a cancellation or hold reason, a location. Staff write what they know ("Smith withdrew
consent"), so before such text joins the order, the order's own patient's name, MRN and
birth date are replaced by placeholders. The raw message keeps the text as sent, for the
hospital.
"""

from __future__ import annotations

import re
from datetime import date

from gateway.domain.patient import PatientIdentity

NAME = "[patient]"
MRN = "[MRN]"
BIRTH_DATE = "[DOB]"


def redact_patient(text: str, patient: PatientIdentity) -> str:
    """``text`` without ``patient``'s names, MRN or birth date, matched whole and in any
    letter case; everything else as written."""
    replacements: list[tuple[str, str]] = [(patient.mrn, MRN)]
    if patient.birth_date is not None:
        replacements += [(shown, BIRTH_DATE) for shown in _date_forms(patient.birth_date)]
    names = [patient.family_name, patient.given_name or ""]
    # Each part of a double name as well as the whole; one letter would match too much.
    parts = {part for name in names for part in [name, *re.split(r"[\s\-]+", name)]}
    replacements += [(part, NAME) for part in sorted(parts, key=len, reverse=True) if len(part) > 1]
    for value, placeholder in replacements:
        if value.strip():
            pattern = rf"(?<![\w]){re.escape(value.strip())}(?![\w])"
            text = re.sub(pattern, placeholder, text, flags=re.IGNORECASE)
    return text


def _date_forms(day: date) -> list[str]:
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    return [
        f"{y}-{m}-{d}",
        f"{y}{m}{d}",
        f"{d}/{m}/{y}",
        f"{m}/{d}/{y}",
        f"{d}.{m}.{y}",
        f"{d}-{m}-{y}",
        f"{day.day}/{day.month}/{y}",
        f"{day.month}/{day.day}/{y}",
    ]
