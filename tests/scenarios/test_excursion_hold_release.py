"""Scenario `excursion-hold-release` (fixtures/scenarios/excursion-hold-release.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_excursion_hold_release(world: Sandbox) -> None:
    played = play(world, "excursion-hold-release")
    order = played.order
    assert order["state"] == "RECEIVED_AT_SITE" and order["status"] == "RECEIVED_AT_SITE"
    [hold] = [h for h in order["holds"] if h["reason"] == "temperature_excursion"]
    assert hold["released_at"], "QA's decision released the hold"
    held = next(r for r in played.results if "excursion" in r.title)
    assert held.actual["status"] == "ON_HOLD"
    to_site = next(s for s in order["shipments"] if s["leg"] == "to_site")
    assert to_site["excursions"], "the excursion is kept on the shipment"
