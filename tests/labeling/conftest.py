"""Shared synthetic fixtures. FINs A9990–A9999 are ICCBBA's validation range; no real data."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from labeling import (
    DonationId,
    LabelData,
    LabelKind,
    PatientIdentity,
    ProductCode,
    new_coi,
)

BERLIN = ZoneInfo("Europe/Berlin")
TEST_FINS = tuple(f"A999{n}" for n in range(10))


@pytest.fixture
def coi():
    return new_coi("A9997", 2026, random.Random(20260512))


@pytest.fixture
def patient() -> PatientIdentity:
    return PatientIdentity("TESTPATIENT, ALEX", date(1980, 1, 31), "Xk42mrn9", "01")


@pytest.fixture
def bag(coi, patient) -> LabelData:
    return LabelData(
        kind=LabelKind.BAG,
        coi=coi,
        unit=DonationId("A9999", 2026, 123456),
        product=ProductCode("S9101", "1", "00"),
        product_description="SITE-LOCAL: Autologous CAR-T cells, cryopreserved, infusion bag",
        collected=datetime(2026, 5, 10, 9, 30, tzinfo=BERLIN),
        expires=datetime(2026, 11, 10, 23, 59, tzinfo=BERLIN),
        storage="Store at or below -150 °C (vapour phase LN2)",
        patient=patient,
        warnings=("NOT EVALUATED FOR INFECTIOUS SUBSTANCES",),
        show_utc=True,
    )


@pytest.fixture
def cassette(coi) -> LabelData:
    return LabelData(
        kind=LabelKind.CASSETTE,
        coi=coi,
        unit=DonationId("A9998", 2026, 654321, "00"),
        product=ProductCode("S9102", "1", "A0"),
        product_description="SITE-LOCAL: Autologous CAR-T cells, cryopreserved, in cassette",
        collected=datetime(2026, 3, 1, 8, 5, tzinfo=BERLIN),
        expires=datetime(2026, 9, 1, 12, 0, tzinfo=BERLIN),
        storage="Store at or below -150 °C",
    )


@pytest.fixture
def wristband(coi, patient) -> LabelData:
    return LabelData(kind=LabelKind.WRISTBAND, coi=coi, patient=patient)


@pytest.fixture(params=["bag", "cassette", "wristband"])
def any_label(request) -> LabelData:
    return request.getfixturevalue(request.param)
