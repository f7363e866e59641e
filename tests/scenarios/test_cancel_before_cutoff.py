"""Scenario `cancel-before-cutoff` (fixtures/scenarios/cancel-before-cutoff.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_cancel_before_cutoff(world: Sandbox) -> None:
    played = play(world, "cancel-before-cutoff")
    assert played.order["state"] == "CANCELLED"
    assert played.outbound["helix-bio"][-1].endswith("/cancellation")
