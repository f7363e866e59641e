"""Scenario `cancel-after-cutoff` (fixtures/scenarios/cancel-after-cutoff.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_cancel_after_cutoff(world: Sandbox) -> None:
    played = play(world, "cancel-after-cutoff")
    assert played.order["state"] == "SLOT_CONFIRMED"
    refused = played.results[-1].actual
    assert refused["ack"] == ["AE"] and refused["refusal"] == "cancellation_cutoff_passed"
    assert not any(line.endswith("/cancellation") for line in played.outbound["helix-bio"])
