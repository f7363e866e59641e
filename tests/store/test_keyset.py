"""Cursors this gateway did not issue are refused in each listing's own error form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.store import keyset

FORGED = ["x|y", "2026-01-01|", "2026-01-01T00:00:00|ord-1", "|ord-1", "nonsense"]


def test_round_trip() -> None:
    at = datetime(2026, 3, 2, 8, 0, 5, tzinfo=UTC)
    assert keyset.decode(keyset.encode(at, "ord-abc")) == (at, "ord-abc")


@pytest.mark.parametrize("cursor", FORGED)
def test_forged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(keyset.InvalidCursor):
        keyset.decode(cursor)


@pytest.mark.parametrize("cursor", FORGED)
def test_every_listing_answers_a_forged_cursor_with_a_client_error(api, cursor: str) -> None:  # type: ignore[no-untyped-def]
    orders = api.get("/orders", params={"cursor": cursor})
    assert orders.status_code == 400 and orders.json()["code"] == "service_error"
    tower = api.get("/tower/api/orders", params={"cursor": cursor})
    assert 400 <= tower.status_code < 500
    fhir = api.get("/fhir/Task", params={"_cursor": cursor})
    assert 400 <= fhir.status_code < 500
    assert fhir.json()["resourceType"] == "OperationOutcome"
