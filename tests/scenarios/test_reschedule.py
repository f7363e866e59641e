"""Scenario `reschedule` (fixtures/scenarios/reschedule.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_reschedule(world: Sandbox) -> None:
    played = play(world, "reschedule")
    assert played.order["reschedule_count"] == 1
    assert played.outbound["helix-bio"][-1].startswith("PATCH ")
