"""Play a scenario from ``fixtures/scenarios/`` against the sandbox and check everything it
promises: every step's answer, the order's final state, the custody log and each message
the partner simulators received for this order (and for no other)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fixtures.replay import Replay, StepResult, Target, load_scenario
from fixtures.sandbox import Sandbox


@dataclass
class Played:
    replay: Replay
    results: list[StepResult]
    order: dict[str, Any]
    outbound: dict[str, list[str]]
    custody: list[str]

    def order_named(self, name: str) -> dict[str, Any]:
        found = self.replay.refresh(self.replay.order_context(name))
        assert found is not None
        return found


def outbound_for(world: Sandbox, order: dict[str, Any]) -> dict[str, list[str]]:
    """What each simulator received about this order only (matched by CoI or placer)."""
    coi, placer = order["coi"], order["external_ids"]["placer_number"]
    seen: dict[str, list[str]] = {
        "ehr": [
            message.message_type
            for message, raw in zip(
                world.ehr[order["site"]["id"]].received,
                world.ehr[order["site"]["id"]].raw,
                strict=True,
            )
            if placer.encode() in raw
        ]
    }
    for name, simulator in [*world.portals.items(), *world.couriers.items()]:
        seen[name] = [
            f"{r.method} {r.path}"
            for r in simulator.requests
            if coi in r.path or coi.encode() in r.body
        ]
    from gateway.demo.report import _soap_operation

    # a goods receipt names the purchase order, not the CoI
    keys = [coi.encode()]
    if order["external_ids"].get("erp_purchase_order"):
        keys.append(order["external_ids"]["erp_purchase_order"].encode())
    seen["erp"] = [
        _soap_operation(r.body)
        for r in world.erp.requests
        if r.method == "POST" and any(key in r.body for key in keys)
    ]
    return seen


def custody_of(order: dict[str, Any]) -> list[str]:
    return [
        event["action"] + (f":{event['verification']}" if event.get("verification") else "")
        for event in order["custody_events"]
    ]


def _pass_time(world: Sandbox, delta: timedelta) -> None:
    """Time passing lets the partners hear what was due before it: the relay delivers
    first, as it would in the hours or days the step skips, then the clock moves."""
    world.drain()
    world.clock.advance(delta)


def play(world: Sandbox, name: str) -> Played:
    scenario = load_scenario(name)
    replay = Replay(
        Target(url=world.url, mllp=world.mllp, secrets=world.secrets),
        clock=world.clock,
        advance=lambda delta: _pass_time(world, delta),
        site=scenario.site,
        client=world.http,
    )
    results = replay.run_steps(scenario.steps)
    failed = [f"step {r.number} {r.title}: {r.detail}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    world.drain()
    order = replay.refresh(replay.order_context("A"))
    assert order is not None
    outbound = outbound_for(world, order)
    for partner, wanted in scenario.outbound.items():
        if partner == "ehr":
            ehr = outbound["ehr"]
            assert ehr, "the EHR heard nothing about the order"
            if "first" in wanted:
                assert ehr[0] == wanted["first"], ehr
            if "last" in wanted:
                assert ehr[-1] == wanted["last"], ehr
            assert len(ehr) >= wanted.get("count_at_least", 1), ehr
            continue
        expected = [replay.fill(line) for line in wanted]
        assert outbound[partner] == expected, f"{partner}: {outbound[partner]}"
    for partner in {"northwind-cell", "cryoroute"} - set(scenario.outbound):
        assert outbound[partner] == [], f"{partner} should have heard nothing: {outbound}"
    custody = custody_of(order)
    if "custody" in scenario.document:
        assert custody == scenario.document["custody"], custody
    return Played(replay, results, order, outbound, custody)
