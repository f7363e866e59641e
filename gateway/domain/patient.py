"""Patient identity: protected health information, kept apart from the order.

Only the hospital's own credentials ever see these fields. Everything that leaves for a
manufacturer or courier carries the order's pseudonym instead, which is random so that
nobody holding the MRN can recompute it.
"""

from __future__ import annotations

import secrets
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

_PSEUDONYM_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no accidental words


def new_pseudonym() -> str:
    """A random pseudonym such as ``PSN-7KQ2-9XHT``; independent of every patient field."""
    body = "".join(secrets.choice(_PSEUDONYM_ALPHABET) for _ in range(8))
    return f"PSN-{body[:4]}-{body[4:]}"


class PatientIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mrn: str = Field(min_length=1, description="Medical record number at the treatment site")
    family_name: str = Field(min_length=1)
    given_name: str | None = None
    birth_date: date | None = None
    sex: str | None = Field(default=None, pattern="^(F|M|O|U)$")
