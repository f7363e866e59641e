"""Scenario `duplicates-out-of-order` (fixtures/scenarios/duplicates-out-of-order.yaml),
replayed against the running sandbox."""

from __future__ import annotations

from fixtures.sandbox import Sandbox
from tests.scenarios.scenario_support import play


def test_duplicates_out_of_order(world: Sandbox) -> None:
    played = play(world, "duplicates-out-of-order")
    by_title = {r.title: r.actual for r in played.results}
    assert by_title["Helix Bio retries the webhook with the same webhook-id"]["replayed"]
    late = by_title["send couriers/journey/polar-express-picked-up-late-to-mfg"]
    assert late["http_status"] == 200 and late["outcome"] == "late"
    assert played.order["state"] == "RELEASED"
    # the repeated ORM created nothing: one order for the placer, enrolled once
    assert played.outbound["helix-bio"].count("POST /api/v2/cases") == 1
