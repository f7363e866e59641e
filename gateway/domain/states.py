"""Lifecycle states of a therapy order and the events that move it.

The names follow the vein-to-vein journey in DESIGN.md. ON_HOLD is an overlay: an order
keeps its lifecycle position while a hold is active, so releasing the hold resumes the
journey exactly where it paused.
"""

from enum import StrEnum


class OrderState(StrEnum):
    REFERRED = "REFERRED"
    ENROLLED = "ENROLLED"
    SLOT_REQUESTED = "SLOT_REQUESTED"
    SLOT_CONFIRMED = "SLOT_CONFIRMED"
    APHERESIS_SCHEDULED = "APHERESIS_SCHEDULED"
    COLLECTED = "COLLECTED"
    SHIPPED_TO_MFG = "SHIPPED_TO_MFG"
    RECEIVED_AT_MFG = "RECEIVED_AT_MFG"
    MANUFACTURING = "MANUFACTURING"
    RELEASED = "RELEASED"
    RELEASED_OOS = "RELEASED_OOS"
    MFG_FAILED = "MFG_FAILED"
    SHIPPED_TO_SITE = "SHIPPED_TO_SITE"
    RECEIVED_AT_SITE = "RECEIVED_AT_SITE"
    STORED = "STORED"
    THAWED = "THAWED"
    INFUSED = "INFUSED"
    CANCELLED = "CANCELLED"


#: The display status of an order with an active hold; never stored as ``state``.
ON_HOLD = "ON_HOLD"

TERMINAL_STATES = frozenset({OrderState.INFUSED, OrderState.CANCELLED})

#: The main line of the journey, in order. Branches (RELEASED_OOS, MFG_FAILED) sit at the
#: rank of RELEASED so that "is this milestone behind us?" has one answer.
JOURNEY: tuple[OrderState, ...] = (
    OrderState.REFERRED,
    OrderState.ENROLLED,
    OrderState.SLOT_REQUESTED,
    OrderState.SLOT_CONFIRMED,
    OrderState.APHERESIS_SCHEDULED,
    OrderState.COLLECTED,
    OrderState.SHIPPED_TO_MFG,
    OrderState.RECEIVED_AT_MFG,
    OrderState.MANUFACTURING,
    OrderState.RELEASED,
    OrderState.SHIPPED_TO_SITE,
    OrderState.RECEIVED_AT_SITE,
    OrderState.STORED,
    OrderState.THAWED,
    OrderState.INFUSED,
)


def journey_rank(state: OrderState) -> int:
    """Position of a state on the main line; -1 for CANCELLED."""
    if state in (OrderState.RELEASED_OOS, OrderState.MFG_FAILED):
        return JOURNEY.index(OrderState.RELEASED)
    if state is OrderState.CANCELLED:
        return -1
    return JOURNEY.index(state)


class EventType(StrEnum):
    ENROLL = "enroll"
    REQUEST_SLOT = "request_slot"
    CONFIRM_SLOT = "confirm_slot"
    SCHEDULE_APHERESIS = "schedule_apheresis"
    RESCHEDULE = "reschedule"
    COLLECT = "collect"
    SHIP_TO_MFG = "ship_to_mfg"
    RECEIVE_AT_MFG = "receive_at_mfg"
    START_MANUFACTURING = "start_manufacturing"
    RELEASE = "release"
    RELEASE_OOS = "release_oos"
    ACCEPT_OOS = "accept_oos"
    FAIL_MANUFACTURING = "fail_manufacturing"
    RECOLLECT = "recollect"
    SHIP_TO_SITE = "ship_to_site"
    RECEIVE_AT_SITE = "receive_at_site"
    STORE = "store"
    THAW = "thaw"
    INFUSE = "infuse"
    PLACE_HOLD = "place_hold"
    RELEASE_HOLD = "release_hold"
    CANCEL = "cancel"
