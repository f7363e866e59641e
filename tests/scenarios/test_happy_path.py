"""Scenario `happy-path` (fixtures/scenarios/happy-path.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_happy_path(world: Sandbox) -> None:
    played = play(world, "happy-path")
    assert played.order["state"] == "INFUSED"
    assert played.outbound["ehr"][0] == "ORP^O10" and "RDS^O13" in played.outbound["ehr"]
    assert played.order["external_ids"]["erp_purchase_order"].startswith("PO")
    assert [r.actual["verdict"] for r in played.results if "verdict" in r.actual] == ["green"] * 4
