"""The scan station page's own logic (gateway/api/static/station.js), run under Node with a
scripted gateway where no Chromium is installed: what the person at the station sees when
the gateway cannot be reached, when a scan arrives over a verdict, and at the bedside."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.api.station import STATIC

NODE = shutil.which("node")
HARNESS = Path(__file__).with_name("station_harness.js")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

BAG = "]d1=+04000=A99912600010200=<S9101100&>0270610900&/CHA999126MJPS4A"
WRISTBAND = "]d1=+03000&/CHA999126MJPS4A=#0019610412&#0010MRNSYN0001"
WRISTBAND_CODE128 = "]C0&/CHA999126MJPS4A"


def run(steps: list[dict[str, Any]], answers: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    assert NODE is not None
    scenario = json.dumps({"steps": steps, "answers": list(answers)})
    done = subprocess.run(
        [NODE, str(HARNESS), str(STATIC), scenario],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def verdict(green: bool, code: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "verdict": "green" if green else "red",
        "green": green,
        "checkpoint": "thaw",
        "user": "pharm.ng",
        "reason_code": code,
        "reason": "All checks passed." if green else f"{code}: the reason",
        "order_id": "ord-1",
        "coi": "CHA999126MJPS4A",
        "unit_id": "A999126000102",
        "bedside_complete": False,
        **extra,
    }
    return {"status": 200, "json": body}


SIGNED_IN_AT_THAW = [{"signin": "pharm.ng", "role": "pharmacist"}, {"checkpoint": "thaw"}]


def test_a_green_scan_shows_green_and_the_harness_is_faithful() -> None:
    shown = run([*SIGNED_IN_AT_THAW, {"wedge": BAG}], [verdict(True)])
    screen = shown["snapshots"][-1]
    assert screen["verdict_shown"] and "green" in screen["verdict_class"]
    assert screen["word"] == "GREEN"
    assert shown["requests"][-1]["body"]["unit_scan"] == BAG
    assert not shown["problems"]


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        ({"network": True}, "station_offline", "nothing was recorded"),
        ({"hang": True}, "no_answer", "not known whether"),
        ({"status": 200}, "unexpected_answer", "not a verdict"),
        ({"status": 502}, "http_502", "502"),
    ],
)
def test_a_scan_the_gateway_does_not_answer_is_a_red_screen_with_the_reason(
    answer: dict[str, Any], code: str, words: str
) -> None:
    """Before, a station that could not reach the gateway showed nothing at all: the scan
    field emptied and no screen said the bag had not been checked."""
    shown = run([*SIGNED_IN_AT_THAW, {"wedge": BAG}], [answer])
    screen = shown["snapshots"][-1]
    assert screen["verdict_shown"] and "red" in screen["verdict_class"], screen
    assert screen["word"] == "RED — STOP"
    assert code in screen["detail"]
    assert words in screen["reason"]
    assert not shown["problems"]


def test_a_scan_arriving_over_a_red_screen_does_not_dismiss_it() -> None:
    """The red screen's Acknowledge button has the focus, so the Enter a scanner types after
    the next read used to press it: a RED — STOP vanished unread and that read was lost.
    Now the read is refused on the screen and the red stays until someone acknowledges it."""
    shown = run(
        [*SIGNED_IN_AT_THAW, {"wedge": BAG}, {"wedge": BAG}, {"wedge": ""}, {"wedge": BAG}],
        [verdict(False, "wrong_order"), verdict(True)],
    )
    red, scanned_over, acknowledged, next_scan = shown["snapshots"][-4:]
    assert red["verdict_shown"] and "red" in red["verdict_class"]
    assert scanned_over["verdict_shown"] and "red" in scanned_over["verdict_class"]
    assert scanned_over["reason"] == red["reason"]
    assert "was not used" in scanned_over["note"]
    assert [r["url"] for r in shown["requests"]].count("/scans") == 2  # the first and the last
    assert not acknowledged["verdict_shown"]  # Enter alone still acknowledges
    assert acknowledged["focused"] == "scan"
    assert next_scan["word"] == "GREEN" and not next_scan["note"]


@pytest.mark.parametrize("band", [WRISTBAND, WRISTBAND_CODE128], ids=["datamatrix", "code128"])
def test_the_wristbands_datamatrix_or_its_code_128_starts_the_bedside_check(band: str) -> None:
    """The wristband's linear Code 128 carries the CoI alone (no patient id): it used to be
    taken for a bag, and the nurse who had just scanned the wristband was told to scan it
    first."""
    shown = run(
        [{"signin": "rn.a"}, {"checkpoint": "bedside"}, {"wedge": band}, {"wedge": BAG}],
        [verdict(True, bedside_complete=True, checkpoint="bedside")],
    )
    after_band, after_bag = shown["snapshots"][-2:]
    assert not after_band["verdict_shown"] and "wristband scanned" in after_band["band_status"]
    scans = [r["body"] for r in shown["requests"] if r["url"] == "/scans"]
    assert len(scans) == 1 and scans[0]["wristband_scan"] == band
    assert scans[0]["unit_scan"] == BAG
    assert after_bag["word"] == "GREEN"


def test_a_bag_is_never_taken_for_the_wristband() -> None:
    shown = run([{"signin": "rn.a"}, {"checkpoint": "bedside"}, {"wedge": BAG}])
    screen = shown["snapshots"][-1]
    assert screen["verdict_shown"] and "wristband first" in screen["reason"]
    assert not [r for r in shown["requests"] if r["url"] == "/scans"]


def test_a_wristband_scanned_before_sign_out_is_not_the_next_persons_check() -> None:
    """The pending wristband outlived sign-out: the next person's first bag scan was sent
    with it and recorded as their wristband check, a wristband they never scanned. The
    first person's green check still carries over, so a second person can confirm it."""
    shown = run(
        [
            {"signin": "rn.a"},
            {"checkpoint": "bedside"},
            {"wedge": WRISTBAND},
            {"signout": True},
            {"signin": "rn.b"},
            {"wedge": BAG},
        ]
    )
    after_signout = shown["snapshots"][3]
    assert "wristband scanned" not in after_signout["band_status"]
    screen = shown["snapshots"][-1]
    assert screen["verdict_shown"] and "wristband first" in screen["reason"]
    assert not [r for r in shown["requests"] if r["url"] == "/scans"]


def test_the_second_person_confirms_the_first_persons_green_check() -> None:
    first = verdict(True, checkpoint="bedside", bedside_complete=False)
    second = verdict(True, checkpoint="bedside", bedside_complete=True)
    shown = run(
        [
            {"signin": "rn.a"},
            {"checkpoint": "bedside"},
            {"wedge": WRISTBAND},
            {"wedge": BAG},
            {"ack": True},
            {"signout": True},
            {"signin": "rn.b"},
            {"wedge": BAG},
        ],
        [first, second],
    )
    scans = [r["body"] for r in shown["requests"] if r["url"] == "/scans"]
    assert scans[1]["order_id"] == "ord-1" and "wristband_scan" not in scans[1]
    assert scans[1]["user"] == "rn.b"
    assert "complete" in shown["snapshots"][-1]["progress"]


def scans_sent(shown: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["body"] for r in shown["requests"] if r["url"] == "/scans"]


def held(name: str, answer: dict[str, Any]) -> dict[str, Any]:
    """An answer the gateway gives only when a {"release": name} step says so."""
    return {**answer, "held": name}


def test_a_red_answered_while_a_second_read_waits_is_not_replaced_by_its_green() -> None:
    """A scan waits up to 20 s for the gateway with the scan field focused, so the scanner's
    next read was sent at once: bag A's red showed and bag B's green, answered a moment
    later, replaced it, so the RED — STOP was never seen. Now B's read is not used and the
    screen says so; the red stays."""
    shown = run(
        [
            *SIGNED_IN_AT_THAW,
            {"wedge": BAG},
            {"wedge": BAG},
            {"release": "A"},
            {"release": "B"},
        ],
        [held("A", verdict(False, "wrong_order")), held("B", verdict(True))],
    )
    sent_a, read_b, red, later = shown["snapshots"][-4:]
    assert later["word"] == "RED — STOP" and "red" in later["verdict_class"]
    assert all(s["word"] != "GREEN" for s in shown["snapshots"])
    assert red["word"] == "RED — STOP" and "wrong_order" in red["detail"]
    assert later["reason"] == red["reason"] and "was not used" in later["note"]
    assert "was not used" in red["note"]  # the extra read is still reported over the red
    assert sent_a["checking"] and not sent_a["verdict_shown"]
    assert read_b["checking"] and "was not used" in read_b["checking_note"]
    assert not red["checking"]
    assert not any("GREEN" in line for line in later["history"])
    assert not shown["problems"]


def test_a_read_while_a_scan_is_being_checked_is_not_sent() -> None:
    shown = run(
        [
            *SIGNED_IN_AT_THAW,
            {"wedge": BAG},
            {"wedge": BAG},
            {"wedge": "=+B9990"},
            {"release": "A"},
        ],
        [held("A", verdict(True)), verdict(True), verdict(True)],
    )
    assert len(scans_sent(shown)) == 1  # only the first read reached the gateway
    screen = shown["snapshots"][-1]
    assert screen["word"] == "GREEN" and "was not used" in screen["note"]
    assert not screen["checking"] and not screen["checking_note"]
    assert not shown["problems"]


def test_after_the_red_is_acknowledged_the_next_scan_is_checked_as_usual() -> None:
    shown = run(
        [
            *SIGNED_IN_AT_THAW,
            {"wedge": BAG},
            {"wedge": BAG},
            {"release": "A"},
            {"ack": True},
            {"wedge": BAG},
        ],
        [held("A", verdict(False, "wrong_order")), verdict(True)],
    )
    red, acknowledged, next_scan = shown["snapshots"][-3:]
    assert red["word"] == "RED — STOP"
    assert not acknowledged["verdict_shown"] and acknowledged["focused"] == "scan"
    assert next_scan["word"] == "GREEN" and "green" in next_scan["verdict_class"]
    assert not next_scan["note"] and not next_scan["checking_note"]
    assert len(scans_sent(shown)) == 2  # the first bag and the one scanned after the red
    assert not shown["problems"]


def test_at_the_bedside_no_read_during_a_check_completes_it_with_the_wristband_a_red_cleared() -> (
    None
):
    """Bag B, scanned while bag A was checked, was sent with the wristband; A's red cleared
    the wristband on the page but B's green then showed "bedside verification complete"
    over the red nobody saw. A wristband read during the check is not kept either."""
    complete = verdict(True, checkpoint="bedside", bedside_complete=True)
    shown = run(
        [
            {"signin": "rn.a"},
            {"checkpoint": "bedside"},
            {"wedge": WRISTBAND},
            {"wedge": BAG},
            {"wedge": WRISTBAND},
            {"wedge": BAG},
            {"release": "A"},
            {"release": "B"},
            {"ack": True},
            {"wedge": BAG},
        ],
        [
            held("A", verdict(False, "wrong_order", checkpoint="bedside")),
            held("B", complete),
            complete,
        ],
    )
    assert all("complete" not in s["progress"] for s in shown["snapshots"])
    assert all(s["word"] != "GREEN" for s in shown["snapshots"])
    sent = scans_sent(shown)
    assert len(sent) == 1 and sent[0]["wristband_scan"] == WRISTBAND
    red = shown["snapshots"][6]
    assert red["word"] == "RED — STOP" and red["band_status"] == "—"
    assert "start again" in red["progress"].lower()
    assert "wristband first" in shown["snapshots"][-1]["reason"]
    assert not shown["problems"]


def test_a_verdict_arriving_over_an_unacknowledged_red_does_not_replace_it() -> None:
    """However a verdict reaches the page while a red is showing, the red stays until it is
    acknowledged and the later verdict is not shown as current, nor does it complete the
    bedside check the red started over."""
    late = verdict(True, checkpoint="bedside", bedside_complete=True)["json"]
    shown = run(
        [
            {"signin": "rn.a"},
            {"checkpoint": "bedside"},
            {"wedge": WRISTBAND},
            {"wedge": BAG},
            {"arrives": late},
            {"ack": True},
            {"wedge": BAG},
        ],
        [verdict(False, "wrong_order", checkpoint="bedside")],
    )
    red, after, acknowledged, next_bag = shown["snapshots"][-4:]
    assert after["word"] == "RED — STOP" and after["reason"] == red["reason"]
    assert "was not used" in after["note"] and "wristband first" in after["note"]
    assert "complete" not in after["progress"] and after["band_status"] == "—"
    assert "not used" in after["history"][0]
    assert not acknowledged["verdict_shown"]
    assert "wristband first" in next_bag["reason"]
    assert len(scans_sent(shown)) == 1
    assert not shown["problems"]


def _photos_sent(shown: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["body"] for r in shown["requests"] if r["url"] == "/scans/image"]


def test_a_photo_chosen_while_a_red_shows_is_not_sent() -> None:
    """A file dialog opened before the red came: its picture would be checked with no
    wristband (the red cleared it) and counted as a second person's bedside check."""
    shown = run(
        [
            {"signin": "rn.a", "role": "nurse"},
            {"checkpoint": "bedside"},
            {"wedge": WRISTBAND},
            {"wedge": BAG},
            {"photo": True},
        ],
        [verdict(False, "wrong_order", checkpoint="bedside")],
    )
    assert _photos_sent(shown) == []
    screen = shown["snapshots"][-1]
    assert screen["word"] == "RED — STOP" and "was not used" in screen["note"]
    assert not shown["problems"]


def test_a_bedside_photo_without_a_wristband_asks_for_the_wristband_first() -> None:
    shown = run(
        [{"signin": "rn.a", "role": "nurse"}, {"checkpoint": "bedside"}, {"photo": True}],
        [verdict(True, checkpoint="bedside")],
    )
    assert _photos_sent(shown) == []
    screen = shown["snapshots"][-1]
    assert screen["word"] == "RED — STOP" and "wristband first" in screen["reason"]
    assert not shown["problems"]


def test_a_photo_at_thaw_is_still_checked() -> None:
    shown = run([*SIGNED_IN_AT_THAW, {"photo": True}], [verdict(True)])
    assert len(_photos_sent(shown)) == 1 and shown["snapshots"][-1]["word"] == "GREEN"
    assert not shown["problems"]
