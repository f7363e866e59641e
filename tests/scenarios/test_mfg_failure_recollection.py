"""Scenario `mfg-failure-recollection` (fixtures/scenarios/mfg-failure-recollection.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_mfg_failure_recollection(world: Sandbox) -> None:
    played = play(world, "mfg-failure-recollection")
    order = played.order
    assert order["state"] == "COLLECTED" and order["collection_cycle"] == 2
    apheresis = [u for u in order["units"] if u["kind"] == "apheresis"]
    assert len(apheresis) == 2, "both collections stay on the same CoI"
    legs = [s["leg"] for s in order["shipments"]]
    assert legs.count("to_manufacturer") == 2
