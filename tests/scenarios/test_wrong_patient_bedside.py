"""Scenario `wrong-patient-bedside` (fixtures/scenarios/wrong-patient-bedside.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_wrong_patient_bedside(world: Sandbox) -> None:
    played = play(world, "wrong-patient-bedside")
    red = next(r for r in played.results if r.actual.get("verdict") == "red")
    assert red.actual["reason"] == "wrong_order" and "STOP" in red.actual["note"]
    assert played.order["state"] == "THAWED"
    bravo = played.order_named("B")
    assert bravo["coi"] != played.order["coi"] and bravo["state"] == "RELEASED"
