"""``mappings/manufacturers/<id>.yaml``: one manufacturer portal's shapes and words.

Everything that differs between portals — where the status word and identifiers sit in a
webhook, what the words are, how dates are written, what our REST calls look like — is
here, so adding a manufacturer is writing a file, not code.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.manufacturers.paths import check_time_format
from gateway import mapping_check
from gateway.domain.states import EventType
from gateway.mapping_files import MappingFileError, load_named, mappings_dir


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Model):
    """Where a value sits in a partner document, and how it is written."""

    path: str
    format: str | None = Field(
        default=None, description="iso8601, epoch_s, epoch_ms or a strptime pattern (times)"
    )

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None:
            check_time_format(value)
        return value


class WebhookAuth(_Model):
    scheme: Literal["standard-webhooks", "hmac-sha256-hex"] = "standard-webhooks"
    secret_env: list[str] = Field(
        default_factory=list, description="Environment variables holding whsec_ secrets"
    )
    secret_files: list[str] = Field(default_factory=list, description="Files holding secrets")
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    signature_header: str | None = Field(default=None, description="hmac-sha256-hex only")
    timestamp_header: str | None = None
    id_header: str | None = None
    prefix: str = "sha256="

    @model_validator(mode="after")
    def _headers(self) -> WebhookAuth:
        if self.scheme == "hmac-sha256-hex" and not (
            self.signature_header and self.timestamp_header and self.id_header
        ):
            raise ValueError(
                "hmac-sha256-hex needs signature_header, timestamp_header and id_header"
            )
        if not self.secret_env and not self.secret_files:
            raise ValueError("name at least one secret_env variable or secret_files path")
        return self


#: What a partner status word becomes: a lifecycle event, or ``record`` (stored and
#: acknowledged, no state change: a slot offer, a kit shipment).
Action = EventType | Literal["record"]

DETAIL_FIELDS = {
    "slot_start",
    "apheresis_at",
    "reason",
    "location",
    "unit_id",
    "unit_expires_at",
    "unit_volume_ml",
}
TIME_FIELDS = {"slot_start", "apheresis_at", "unit_expires_at"}


class Inbound(_Model):
    status: str = Field(description="Path of the status word")
    at: FieldSpec = Field(description="When it happened")
    coi: str | None = Field(default=None, description="Path of the CoI identifier")
    order_ref: str | None = Field(default=None, description="Path of the portal's order id")
    timezone: str = "UTC"
    statuses: dict[str, Action]
    fields: dict[str, FieldSpec] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        unknown = set(value) - DETAIL_FIELDS
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; known: {sorted(DETAIL_FIELDS)}")
        for name in TIME_FIELDS & set(value):
            if value[name].format is None:
                raise ValueError(f"{name} is a time: give its format")
        return value

    @model_validator(mode="after")
    def _identifiers(self) -> Inbound:
        if not self.coi and not self.order_ref:
            raise ValueError("give coi or order_ref (or both) so messages find their order")
        if self.at.format is None:
            raise ValueError("at.format is required")
        return self


class ValueSpec(_Model):
    """One outbound field: from the notice payload (a dotted key), or a constant."""

    source: str | None = Field(default=None, alias="from")
    const: Any = None
    format: str | None = None
    map: dict[str, Any] | None = None
    required: bool = False

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None:
            check_time_format(value)
        return value


class Operation(_Model):
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(description="URL path; {dotted.key} is filled from the notice payload")
    body: dict[str, str | ValueSpec] = Field(
        default_factory=dict, description="Partner JSON path → payload key or value spec"
    )
    response: dict[str, str] = Field(
        default_factory=dict, description="What to keep from the answer: order_ref → path"
    )


class Endpoint(_Model):
    url: str
    url_env: str | None = Field(default=None, description="Environment override of url")
    token_env: str | None = Field(default=None, description="Bearer token variable, if any")
    timeout_seconds: float = Field(default=15, gt=0)

    def base_url(self) -> str:
        return (os.environ.get(self.url_env) if self.url_env else None) or self.url


class Outbound(_Model):
    endpoint: Endpoint
    timezone: str = "UTC"
    operations: dict[Literal["enroll", "request_slot", "cancel", "reschedule"], Operation]


class ManufacturerMapping(_Model):
    id: str
    name: str
    webhook: WebhookAuth
    inbound: Inbound
    outbound: Outbound


def load_manufacturers(directory: Path | None = None) -> dict[str, ManufacturerMapping]:
    folder = (directory or mappings_dir()) / "manufacturers"
    return load_named(folder, ManufacturerMapping, "id")


@functools.lru_cache(maxsize=8)
def _cached(folder: Path) -> dict[str, ManufacturerMapping]:
    return load_manufacturers(folder)


def manufacturer(partner: str, directory: Path | None = None) -> ManufacturerMapping | None:
    return _cached(directory or mappings_dir()).get(partner)


def _check(folder: Path) -> int:
    found = load_manufacturers(folder)
    from gateway.therapy_rules import load_rule_book

    for rules in load_rule_book(folder).therapies.values():
        if rules.manufacturer not in found:
            raise MappingFileError(
                folder / "therapies" / f"{rules.code}.yaml",
                None,
                f"manufacturer '{rules.manufacturer}' has no mappings/manufacturers file",
            )
    return len(found)


mapping_check.register("manufacturers", _check)
