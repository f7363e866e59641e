"""Random event sequences against the state machine's invariants (hypothesis)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings, target
from hypothesis import strategies as st

from gateway.domain.errors import TransitionRefused
from gateway.domain.lifecycle import TRANSITIONS, apply
from gateway.domain.model import ScanVerdict, Source, Unit, UnitKind
from gateway.domain.states import TERMINAL_STATES, EventType, OrderState, journey_rank
from tests.domain.helpers import T0, event, fresh_order, rules

HOLD_BLOCKED = {kind for kind, rule in TRANSITIONS.items() if rule.blocked_by_hold}


def details_for(kind: EventType, at, index: int) -> dict:  # type: ignore[no-untyped-def]
    if kind is EventType.ENROLL:
        return {"coi": "CHA999126PROP01"}
    if kind in (EventType.CONFIRM_SLOT,):
        return {"slot_start": at + timedelta(days=12), "apheresis_at": at + timedelta(days=10)}
    if kind in (EventType.SCHEDULE_APHERESIS, EventType.RESCHEDULE, EventType.RECOLLECT):
        return {"apheresis_at": at + timedelta(days=5)}
    if kind is EventType.PLACE_HOLD:
        return {"hold_reason": "other", "reason": "property test"}
    if kind is EventType.COLLECT:
        return {"unit": Unit(unit_id=f"A9991260{index:05d}", kind=UnitKind.APHERESIS)}
    if kind in (EventType.RELEASE, EventType.RELEASE_OOS):
        return {"unit": Unit(unit_id=f"A9991261{index:05d}", kind=UnitKind.FINAL_PRODUCT)}
    return {}


def plausible_events(state: OrderState) -> list[EventType]:
    return [kind for kind, rule in TRANSITIONS.items() if state in rule.sources]


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(["exa-cel", "sam-cel"]), st.data())
def test_random_sequences_keep_the_invariants(code: str, data: st.DataObject) -> None:
    rule = rules(code)
    order = fresh_order(code)
    at = T0
    deepest = OrderState.REFERRED
    for index in range(data.draw(st.integers(min_value=1, max_value=60), label="length")):
        # Mostly events that fit the current state (so sequences get deep), sometimes any.
        plausible = plausible_events(order.state) or list(EventType)
        kind = data.draw(
            st.one_of(st.sampled_from(plausible), st.sampled_from(list(EventType)))
            if data.draw(st.integers(0, 9))
            else st.sampled_from(list(EventType))
        )
        source = data.draw(st.sampled_from([Source.HOSPITAL, Source.MANUFACTURER, Source.COURIER]))
        at = at + timedelta(minutes=data.draw(st.integers(min_value=0, max_value=60 * 24 * 3)))
        if kind is EventType.INFUSE and data.draw(st.booleans(), label="verified"):
            order = order.model_copy(deep=True)
            order.scans.append(
                ScanVerdict(
                    at=at, checkpoint="bedside", user="rn.a", green=True, method="wristband"
                )
            )
        before = order
        ev = event(kind, at=at, source=source, **details_for(kind, at, index))
        try:
            outcome = apply(before, ev, rule, at)
        except TransitionRefused as refusal:
            assert refusal.code  # every refusal is machine-readable
            if before.state in TERMINAL_STATES:
                assert refusal.code == "order_terminal"
            continue
        after = outcome.order
        # nothing leaves INFUSED or CANCELLED
        assert before.state not in TERMINAL_STATES
        # versions strictly increase with every change, and only then
        if outcome.kind == "duplicate":
            assert after.version == before.version
        else:
            assert after.version == before.version + 1
        if outcome.kind == "late":
            assert after.state is before.state
        # an active hold blocks dispense and every other hold-blocked decision
        # (a late milestone only fills in the timeline; it decides nothing)
        if before.on_hold and kind in HOLD_BLOCKED and outcome.kind == "applied":
            raise AssertionError(f"{kind} applied while on hold")
        # infusion only from THAWED, and only within the therapy's thaw window
        if after.state is OrderState.INFUSED:
            assert before.state is OrderState.THAWED
            thawed = after.milestones.thawed_at
            infused = after.milestones.infused_at
            assert thawed and infused
            assert infused - thawed <= timedelta(minutes=rule.thaw_to_infusion_minutes)
        # the CoI never changes once assigned
        if before.coi:
            assert after.coi == before.coi
        # the collection count never exceeds the rule
        assert after.collection_cycle <= rule.max_collections
        order = after
        if order.state is not OrderState.CANCELLED:
            deepest = max(deepest, order.state, key=journey_rank)
    target(float(journey_rank(deepest)), label="deepest state reached")
