"""What a bag label says beyond its identifiers, checked against the order: every expiry
structure it may carry (``&>`` date and time, ``=>`` a date meaning 23:59 that day, ``=(``
with TT 01 in local time or UTC) against the release record, where expiries that disagree
are red; and the product code's collection type, which must say autologous use."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gateway.domain.verification import Checkpoint
from gateway.service.labels import site_zone
from gateway.service.orders import OrderService
from gateway.service.scanning import ScanRequest, ScanResult, ScanStation
from labeling.structures import ExpirationDate, ExpirationDateTime, FlexibleDateTime
from tests.scan_fixtures import Prepared

_DATE_AND_TIME = re.compile(r"&>\d{10}")


def _label_with(prepared: Prepared, *structures: object) -> str:
    """The bag's DataMatrix text with its ``&>`` expiry replaced by ``structures``; the
    compound header's count is kept right."""
    text = prepared.bag_text
    assert _DATE_AND_TIME.search(text), "the bag label carries &>"
    rendered = "".join(f"{s.PREFIX}{s.content}" for s in structures)  # type: ignore[attr-defined]
    text = _DATE_AND_TIME.sub(rendered, text, count=1)
    count = int(text[2:4]) - 1 + len(structures)
    return f"=+{count:02d}{text[4:]}"


def _local(service: OrderService, station: ScanStation, prepared: Prepared) -> datetime:
    zone = site_zone(service.get(prepared.order_id), station.sites)
    return prepared.expires_at.astimezone(zone).replace(tzinfo=None)


def _storage_scan(station: ScanStation, text: str) -> ScanResult:
    return station.scan(ScanRequest(checkpoint=Checkpoint.STORAGE, user="ph.a", unit_scan=text))


def test_a_date_only_expiry_agrees_when_the_record_expires_that_day(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    day = _local(service, station, prepared).date()
    result = _storage_scan(station, _label_with(prepared, ExpirationDate(day)))
    assert result.green, result.reason


def test_a_date_only_expiry_on_another_day_is_a_label_mismatch(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    day = _local(service, station, prepared).date() + timedelta(days=30)
    result = _storage_scan(station, _label_with(prepared, ExpirationDate(day)))
    assert not result.green and result.reason_code == "label_mismatch"


def test_a_flexible_expiry_is_read_in_utc_or_local_time(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    in_utc = prepared.expires_at.astimezone(UTC).replace(tzinfo=None)
    agreeing = FlexibleDateTime(in_utc, zone=FlexibleDateTime.UTC, kind=FlexibleDateTime.EXPIRY)
    assert _storage_scan(station, _label_with(prepared, agreeing)).green
    local = _local(service, station, prepared) + timedelta(hours=5)
    later = FlexibleDateTime(local, zone=FlexibleDateTime.LOCAL, kind=FlexibleDateTime.EXPIRY)
    result = _storage_scan(station, _label_with(prepared, later))
    assert not result.green and result.reason_code == "label_mismatch"


def test_an_expired_date_only_label_is_red_even_when_the_record_says_later(
    service: OrderService, station: ScanStation, prepare, clock
) -> None:  # type: ignore[no-untyped-def]
    # The record wins the expiry check, and the mismatch check catches the label: either
    # way the bag is not used.
    prepared = prepare("RECEIVED_AT_SITE")
    yesterday = (clock() - timedelta(days=1)).date()
    result = _storage_scan(station, _label_with(prepared, ExpirationDate(yesterday)))
    assert not result.green and result.reason_code == "label_mismatch"


def test_a_collection_date_beside_the_expiry_is_not_a_conflict(
    service: OrderService, station: ScanStation, prepare, clock
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    local = _local(service, station, prepared)
    expiry = FlexibleDateTime(local, zone=FlexibleDateTime.LOCAL, kind=FlexibleDateTime.EXPIRY)
    collected = FlexibleDateTime(
        local - timedelta(days=100),
        zone=FlexibleDateTime.LOCAL,
        kind=FlexibleDateTime.COLLECTION,
    )
    result = _storage_scan(station, _label_with(prepared, expiry, collected))
    assert result.green, result.reason


def test_one_expiry_written_in_local_time_and_in_utc_is_one_expiry(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    local = _local(service, station, prepared)
    in_utc = prepared.expires_at.astimezone(UTC).replace(tzinfo=None)
    text = _label_with(
        prepared,
        FlexibleDateTime(local, zone=FlexibleDateTime.LOCAL, kind=FlexibleDateTime.EXPIRY),
        FlexibleDateTime(in_utc, zone=FlexibleDateTime.UTC, kind=FlexibleDateTime.EXPIRY),
    )
    result = _storage_scan(station, text)
    assert result.green, result.reason


def test_two_expiries_that_disagree_are_red(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    local = _local(service, station, prepared)
    text = _label_with(
        prepared,
        ExpirationDateTime(local),
        ExpirationDate(local.date() + timedelta(days=1)),
    )
    result = _storage_scan(station, text)
    assert not result.green and result.reason_code == "conflicting_scan"
    assert "two different expiry dates" in result.reason


_PRODUCT_CODE = re.compile(r"=<(S\w{4})(\w)(\w{2})")


def test_a_bag_not_marked_for_autologous_use_is_red(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    found = _PRODUCT_CODE.search(prepared.bag_text)
    assert found and found[2] == "1", "the bag label is marked for autologous use"
    directed = _PRODUCT_CODE.sub(r"=<\g<1>2\g<3>", prepared.bag_text, count=1)
    result = _storage_scan(station, directed)
    assert not result.green and result.reason_code == "wrong_product"
    assert "collection type 2" in result.reason and "autologous" in result.reason
