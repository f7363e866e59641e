"""``mappings/couriers/<id>.yaml``: one specialty courier's shapes, words and lanes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.manufacturers.mapping import Endpoint, FieldSpec, Operation, WebhookAuth
from adapters.manufacturers.paths import check_time_format
from gateway import mapping_check
from gateway.mapping_files import load_named, mappings_dir
from gateway.service.notifications import Lane

Milestone = Literal[
    "booked",
    "picked_up",
    "tendered_to_airline",
    "departed",
    "arrived",
    "out_for_delivery",
    "delivered",
    "exception",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MilestoneSpec(_Model):
    path: str = Field(description="A list of milestones, one object, or '' for the document")
    code: str
    at: FieldSpec
    location: str | None = None


class ReadingSpec(_Model):
    path: str
    at: FieldSpec
    value: str
    unit: Literal["celsius", "fahrenheit", "kelvin"] = "celsius"


class Inbound(_Model):
    tracking: str = Field(description="Path of the tracking number")
    logger_id: str | None = None
    timezone: str = "UTC"
    milestones: MilestoneSpec | None = None
    readings: ReadingSpec | None = None
    codes: dict[str, Milestone]


class LoggerCsv(_Model):
    """A data logger's export: ``# key: value`` header lines, then a CSV table."""

    tracking_key: str = "tracking"
    logger_key: str = "logger"
    time_column: str
    value_column: str
    time_format: str
    unit: Literal["celsius", "fahrenheit", "kelvin"] = "celsius"
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _format(self) -> LoggerCsv:
        check_time_format(self.time_format)
        return self


class Track(_Model):
    path: str = Field(description="GET path for polling; {tracking_number} is filled in")


class Outbound(_Model):
    endpoint: Endpoint
    timezone: str = "UTC"
    book: Operation
    track: Track | None = None

    @model_validator(mode="after")
    def _answers(self) -> Outbound:
        if "tracking_number" not in self.book.response:
            raise ValueError("book.response must say where the tracking_number is")
        return self


class CourierMapping(_Model):
    id: str
    name: str
    webhook: WebhookAuth
    lanes: list[Lane] = Field(default_factory=list)
    inbound: Inbound
    logger_csv: LoggerCsv | None = None
    outbound: Outbound


def load_couriers(directory: Path | None = None) -> dict[str, CourierMapping]:
    return load_named((directory or mappings_dir()) / "couriers", CourierMapping, "id")


@functools.lru_cache(maxsize=8)
def _cached(folder: Path) -> dict[str, CourierMapping]:
    return load_couriers(folder)


def courier(partner: str, directory: Path | None = None) -> CourierMapping | None:
    return _cached(directory or mappings_dir()).get(partner)


def _check(folder: Path) -> int:
    return len(load_couriers(folder))


mapping_check.register("couriers", _check)
