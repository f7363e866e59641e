"""Scenario `oos-accepted` (fixtures/scenarios/oos-accepted.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_oos_accepted(world: Sandbox) -> None:
    played = play(world, "oos-accepted")
    assert played.order["oos_accepted_by"] == "dr.carol.zz-doctor"
    assert played.order["state"] == "SHIPPED_TO_SITE"
