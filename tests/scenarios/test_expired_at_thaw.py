"""Scenario `expired-at-thaw` (fixtures/scenarios/expired-at-thaw.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_expired_at_thaw(world: Sandbox) -> None:
    played = play(world, "expired-at-thaw")
    assert played.order["state"] == "STORED"
    scan, thaw = played.results[-2:]
    assert scan.actual["reason"] == "expired" and thaw.actual["code"] == "product_expired"
