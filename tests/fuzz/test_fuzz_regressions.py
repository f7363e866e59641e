"""Inputs the fuzzers found that once made the gateway answer HTTP 500 (or crash a
handler); each must now be refused in its protocol's error form."""

from __future__ import annotations

import json

import pytest

PROBLEM = "application/problem+json"


def _assert_problem(response, status: int) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    "cursor", ["garbage", "2026-11-02T09:00:00", "2026-11-02T09:00:00+00:00|", "|ord-1", "\x00"]
)
def test_a_cursor_the_api_did_not_issue_is_a_400(api, cursor: str) -> None:  # type: ignore[no-untyped-def]
    _assert_problem(api.get("/orders", params={"cursor": cursor}), 400)


def test_a_cursor_the_api_issued_still_pages(api) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/orders", params={"cursor": "2099-01-01T00:00:00+00:00|ord-zzz"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/admin/inbox/9223372036854775808"),
        ("GET", "/admin/inbox/2147483648"),
        ("GET", "/admin/inbox/0"),
        ("POST", "/admin/outbox/9223372036854775808/retry"),
        ("POST", "/admin/outbox/99999999999/dead-letter"),
    ],
)
def test_row_ids_beyond_the_column_range_are_a_422(api, method: str, url: str) -> None:  # type: ignore[no-untyped-def]
    _assert_problem(api.request(method, url, json={"reason": "fuzz"}), 422)


@pytest.mark.parametrize(
    "document",
    [
        {"trackingNo": "TRK-1", "status": ["picked_up"], "statusTime": "2026-11-02T09:00:00Z"},
        {"trackingNo": "TRK-1", "status": {"code": "picked_up"}, "statusTime": 1795437084},
    ],
)
def test_a_courier_status_that_is_not_a_word_is_a_422(
    api, clock, monkeypatch: pytest.MonkeyPatch, document: dict[str, object]
) -> None:  # type: ignore[no-untyped-def]
    from fixtures.simulators.courier import CourierSimulator
    from fixtures.simulators.manufacturer_portal import new_secret

    secret = new_secret()
    monkeypatch.setenv("V2V_WEBHOOK_SECRET_CRYOROUTE", secret)
    with CourierSimulator("cryoroute", secret) as courier:
        body = json.dumps(document).encode()
        headers = {
            **courier.headers(body, timestamp=int(clock().timestamp())),
            "Content-Type": "application/json",
        }
    response = api.post("/webhooks/couriers/cryoroute", content=body, headers=headers)
    _assert_problem(response, 422)


def test_a_wedge_read_with_non_ascii_digits_is_a_red_reason_not_a_crash() -> None:
    from labeling.scan import read_scan

    result = read_scan("=A99912\u136c6000102")
    assert not result.accepted and result.reason


@pytest.mark.parametrize("value", [10**30, -(10**30), "1e400", "nan"])
def test_an_epoch_time_outside_the_calendar_is_a_plain_value_error(value: object) -> None:
    from adapters.manufacturers.paths import parse_time

    with pytest.raises(ValueError, match="outside the range"):
        parse_time(value, "epoch_ms")


def test_a_birth_year_below_1000_is_a_red_reason_not_a_crash() -> None:
    from labeling.scan import read_scan

    result = read_scan("=#0009700101")
    assert not result.accepted and "year" in (result.reason or "")


def test_a_scan_with_a_birth_year_below_1000_is_a_red_verdict(api) -> None:  # type: ignore[no-untyped-def]
    body = {"checkpoint": "receipt", "user": "nurse", "unit_scan": "=+07000=#0009700101"}
    response = api.post("/scans", json=body)
    assert response.status_code == 200 and response.json()["verdict"] == "red"
