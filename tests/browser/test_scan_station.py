"""The scan station page in headless Chromium: a pharmacist signs in, scans, sees the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
from playwright.sync_api import expect

from gateway.api.app import create_app
from gateway.embedded import serve_in_thread
from gateway.service.orders import OrderService

pytestmark = pytest.mark.browser


@pytest.fixture
def gateway_url(service: OrderService):  # type: ignore[no-untyped-def]
    with serve_in_thread(create_app(service)) as server:
        yield server.url


def sign_in(page, url: str, user: str, role: str = "nurse") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/station")
    page.get_by_test_id("user").fill(user)
    page.get_by_test_id("role").select_option(role)
    page.get_by_test_id("signin").click()
    expect(page.get_by_test_id("who")).to_contain_text(user)  # sign-in is a round trip


def wedge(page, text: str) -> None:  # type: ignore[no-untyped-def]
    """A keyboard-wedge scanner: types into the focused field and presses Enter."""
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_wrong_patient_bag_shows_a_red_screen(
    page,
    gateway_url: str,
    prepare,  # type: ignore[no-untyped-def]
    service: OrderService,
    screenshots: Path,
) -> None:
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    sign_in(page, gateway_url, "rn.adeyemi")
    page.get_by_test_id("checkpoint").select_option("bedside")
    page.get_by_test_id("scan").focus()
    wedge(page, "]d1" + bravo.wristband_text)
    expect(page.get_by_test_id("band-status")).to_contain_text("wristband scanned")
    wedge(page, "]d1" + alpha.bag_text)  # Alpha's bag at Bravo's bedside
    verdict = page.get_by_test_id("verdict")
    verdict.wait_for(state="visible")
    assert "red" in (verdict.get_attribute("class") or "")
    assert "RED" in page.get_by_test_id("verdict-word").inner_text()
    assert "different order" in page.get_by_test_id("verdict-reason").inner_text()
    page.screenshot(path=str(screenshots / "station-wrong-patient-red.png"))
    # the red verdict is in the custody log under the signed-in user
    bravo_order = service.get(bravo.order_id)
    assert bravo_order.custody_events[-1].verification == "red"
    assert bravo_order.custody_events[-1].who.person == "rn.adeyemi"


def test_two_person_bedside_flow_turns_green(
    page,
    gateway_url: str,
    prepare,  # type: ignore[no-untyped-def]
    screenshots: Path,
) -> None:
    prepared = prepare("THAWED")
    sign_in(page, gateway_url, "rn.adeyemi")
    page.get_by_test_id("checkpoint").select_option("bedside")
    page.get_by_test_id("scan").focus()
    wedge(page, prepared.bag_text)  # bag before wristband: refused
    assert "wristband first" in page.get_by_test_id("verdict-reason").inner_text()
    page.get_by_test_id("verdict-ok").click()
    wedge(page, prepared.wristband_text)
    wedge(page, prepared.bag_text)
    page.get_by_test_id("verdict").wait_for(state="visible")
    assert "GREEN" in page.get_by_test_id("verdict-word").inner_text()
    page.screenshot(path=str(screenshots / "station-bedside-green.png"))
    assert (
        "wristband" in page.get_by_test_id("progress").inner_text().lower()
        or "complete" in page.get_by_test_id("progress").inner_text().lower()
    )


def test_expired_bag_at_thaw_is_red(
    page,
    gateway_url: str,
    prepare,
    clock,  # type: ignore[no-untyped-def]
    screenshots: Path,
) -> None:
    from datetime import timedelta

    prepared = prepare("STORED", expires_in=timedelta(days=1))
    clock.advance(days=2)
    sign_in(page, gateway_url, "pharm.ng", role="pharmacist")
    page.get_by_test_id("checkpoint").select_option("thaw")
    page.get_by_test_id("scan").focus()
    wedge(page, prepared.bag_text)
    page.get_by_test_id("verdict").wait_for(state="visible")
    assert "expired" in page.get_by_test_id("verdict-reason").inner_text()
    page.screenshot(path=str(screenshots / "station-expired-red.png"))


def test_after_a_completed_or_red_bedside_check_the_next_bag_needs_a_wristband(
    page,
    gateway_url: str,
    prepare,  # type: ignore[no-untyped-def]
) -> None:
    """Before, a red kept the wristband and a completed check kept the order, so the next
    bag, at another bed, was checked against this patient's."""
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)

    def verdict() -> str:
        page.get_by_test_id("verdict").wait_for(state="visible")
        text = page.get_by_test_id("verdict-word").inner_text()
        reason = page.get_by_test_id("verdict-reason").inner_text()
        page.get_by_test_id("verdict-ok").click()
        return f"{text}: {reason}"

    sign_in(page, gateway_url, "rn.adeyemi")
    page.get_by_test_id("checkpoint").select_option("bedside")
    page.get_by_test_id("scan").focus()
    wedge(page, alpha.wristband_text)
    wedge(page, bravo.bag_text)  # the wrong patient's bag
    assert verdict().startswith("RED")
    assert "start again" in page.get_by_test_id("progress").inner_text().lower()
    wedge(page, alpha.bag_text)  # the red started the check over: wristband first
    assert "wristband first" in verdict()

    wedge(page, alpha.wristband_text)
    wedge(page, alpha.bag_text)
    assert verdict().startswith("GREEN")  # the wristband and one person complete the check
    assert "complete" in page.get_by_test_id("progress").inner_text().lower()
    wedge(page, bravo.bag_text)  # the next bed: nothing carries over
    assert "wristband first" in verdict()


def test_a_scan_over_a_red_screen_does_not_dismiss_it(
    page,
    gateway_url: str,
    prepare,  # type: ignore[no-untyped-def]
) -> None:
    """The scanner's Enter used to press the focused Acknowledge button: the red vanished."""
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    sign_in(page, gateway_url, "rn.adeyemi")
    page.get_by_test_id("checkpoint").select_option("bedside")
    page.get_by_test_id("scan").focus()
    wedge(page, alpha.wristband_text)
    wedge(page, bravo.bag_text)
    verdict = page.get_by_test_id("verdict")
    verdict.wait_for(state="visible")
    wedge(page, bravo.bag_text)  # scanned again over the red screen
    expect(page.get_by_test_id("verdict-note")).to_contain_text("was not used")
    assert verdict.is_visible() and "red" in (verdict.get_attribute("class") or "")
    page.get_by_test_id("verdict-ok").click()
    assert not verdict.is_visible()


def test_a_read_while_a_scan_is_being_checked_is_not_sent_and_the_red_stays(
    page,
    gateway_url: str,
    prepare,  # type: ignore[no-untyped-def]
    service: OrderService,
) -> None:
    """A scan waits for the gateway with the scan field focused: the next read used to be
    sent at once, and its verdict replaced the first one's red before anyone saw it."""
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    held = []  # the first scan's request, answered only when the test lets it through

    def hold_the_first(route) -> None:  # type: ignore[no-untyped-def]
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/scans", hold_the_first)
    sign_in(page, gateway_url, "rn.adeyemi")
    page.get_by_test_id("checkpoint").select_option("bedside")
    page.get_by_test_id("scan").focus()
    wedge(page, alpha.wristband_text)
    wedge(page, bravo.bag_text)  # the wrong patient's bag: its answer is held back
    expect(page.get_by_test_id("checking")).to_be_visible()
    wedge(page, alpha.bag_text)  # the right bag, read while the first is being checked
    expect(page.get_by_test_id("checking-note")).to_contain_text("was not used")
    assert len(held) == 1
    held[0].continue_()
    verdict = page.get_by_test_id("verdict")
    verdict.wait_for(state="visible")
    assert "red" in (verdict.get_attribute("class") or "")
    expect(page.get_by_test_id("verdict-note")).to_contain_text("was not used")
    assert "complete" not in page.get_by_test_id("progress").inner_text().lower()
    assert service.get(alpha.order_id).custody_events[-1].verification == "red"
    page.get_by_test_id("verdict-ok").click()
    wedge(page, alpha.bag_text)  # the red started the check over: wristband first
    expect(page.get_by_test_id("verdict-reason")).to_contain_text("wristband first")
