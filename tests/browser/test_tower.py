"""The control tower in headless Chromium: a coordinator watches orders change live, opens
one, and acknowledges its alert; a manufacturer sees the same screen without patient names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.api.app import create_app
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Source
from gateway.domain.states import EventType
from gateway.embedded import serve_in_thread
from gateway.service.orders import OrderService
from gateway.store import audit
from tests.tower.conftest import hold, order_in, track  # noqa: F401 (order_in is a fixture)

pytestmark = pytest.mark.browser

COORDINATOR = "role=hospital&tenant=st-mary&actor=coord.lee"
MANUFACTURER = "role=manufacturer&tenant=helix-bio&actor=helix.portal"
TRACE = [-190, -189, -188, -186, -120, -104, -98, -110, -150, -182, -188, -190, -191]


@pytest.fixture
def tower_url(service: OrderService) -> Iterator[str]:
    app = create_app(service, auth=None)
    app.state.tower_heartbeat_seconds = 1.0
    with serve_in_thread(app) as server:
        yield server.url


@pytest.fixture
def orders(service: OrderService, order_in):  # type: ignore[no-untyped-def]  # noqa: F811
    shipped = order_in("SHIPPED_TO_SITE", step=timedelta(hours=20))
    track(service, shipped.id, TRACE, tracking="1Z-POLAR-778")
    held = hold(service, shipped.id)
    waiting = order_in("SLOT_REQUESTED", therapy="sam-cel", patient=1, step=timedelta(hours=3))
    foreign = order_in("MANUFACTURING", site="royal-infirmary", patient=1)
    return {"held": held, "waiting": waiting, "foreign": foreign}


def open_tower(page, url: str, who: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/tower?{who}")
    page.locator("body[data-ready='1']").wait_for(timeout=10_000)
    page.locator("[data-testid=live][data-state=open]").wait_for(timeout=10_000)


def test_coordinator_sees_live_updates_opens_an_order_and_acknowledges_its_alert(
    tower_url: str,
    page,  # type: ignore[no-untyped-def]
    orders,  # type: ignore[no-untyped-def]
    service: OrderService,
    clock,  # type: ignore[no-untyped-def]
    screenshots: Path,
) -> None:
    held, waiting, foreign = orders["held"], orders["waiting"], orders["foreign"]
    open_tower(page, tower_url, COORDINATOR)
    rows = page.get_by_test_id("order-row")
    assert rows.count() == 2
    assert page.locator(f"tr[data-order-id='{foreign.id}']").count() == 0
    assert "Zz-Testpatient, Alpha" in page.get_by_test_id("orders").inner_text()
    funnel = page.get_by_test_id("funnel")
    assert funnel.locator("g[data-state='SLOT_REQUESTED']").get_attribute("data-count") == "1"
    assert funnel.locator("g[data-state='ON_HOLD']").get_attribute("data-count") == "1"
    page.locator("#alerts li[data-kind='temperature_excursion']").wait_for()
    page.screenshot(path=str(screenshots / "tower-overview.png"), full_page=True)

    # a manufacturer confirms the slot while the page is open: the row changes by itself
    row = page.locator(f"tr[data-order-id='{waiting.id}']")
    assert row.get_attribute("data-status") == "SLOT_REQUESTED"
    clock.advance(hours=1)
    service.apply_event(
        waiting.id,
        LifecycleEvent(
            type=EventType.CONFIRM_SLOT,
            source=Source.MANUFACTURER,
            details=EventDetails(
                slot_start=clock() + timedelta(days=9), apheresis_at=clock() + timedelta(days=7)
            ),
        ),
        actor="northwind",
    )
    page.locator(f"tr[data-order-id='{waiting.id}'][data-status='SLOT_CONFIRMED']").wait_for(
        timeout=5_000
    )
    page.locator("g[data-state='SLOT_CONFIRMED'][data-count='1']").wait_for(timeout=5_000)
    page.screenshot(path=str(screenshots / "tower-live-update.png"), full_page=True)

    # open the held order: timeline, temperature trace with its excursion, time in state
    page.locator(f"tr[data-order-id='{held.id}']").click()
    detail = page.get_by_test_id("detail")
    detail.wait_for(state="visible")
    assert page.get_by_test_id("detail-title").inner_text() == "Zz-Testpatient, Alpha"
    chart = detail.get_by_test_id("temperature-chart").last
    assert chart.locator("rect.excursion").count() == 1
    assert chart.locator("line.limit").count() == 1
    assert chart.locator("rect.excursion-band").count() == 1
    spans = detail.get_by_test_id("time-in-state").locator("g.span-row")
    assert spans.count() >= 10
    timeline = detail.get_by_test_id("timeline").inner_text()
    assert "Temperature excursion" in timeline and "Hold placed" in timeline
    page.screenshot(path=str(screenshots / "tower-order-timeline.png"))

    # acknowledge the excursion alert from the order's own alert list
    alert = detail.locator("li[data-kind='temperature_excursion']")
    alert.get_by_test_id("acknowledge").click()
    detail.locator("li[data-kind='temperature_excursion'][data-status='acknowledged']").wait_for(
        timeout=5_000
    )
    page.locator(
        "#alerts li[data-kind='temperature_excursion'][data-status='acknowledged']"
    ).wait_for(timeout=5_000)
    assert "acknowledged by coord.lee" in detail.get_by_test_id("alert-who").inner_text()
    page.screenshot(path=str(screenshots / "tower-alert-acknowledged.png"))
    with service.uow() as uow:
        entries = [e for e in audit.entries(uow.conn, held.id) if e.action == "alert.acknowledged"]
    assert [(e.actor, e.payload["kind"]) for e in entries] == [
        ("coord.lee", "temperature_excursion")
    ]


def test_manufacturer_sees_coi_and_pseudonym_only_and_cannot_act(
    tower_url: str,
    page,  # type: ignore[no-untyped-def]
    orders,  # type: ignore[no-untyped-def]
    screenshots: Path,
) -> None:
    held = orders["held"]
    open_tower(page, tower_url, MANUFACTURER)
    rows = page.get_by_test_id("order-row")
    assert rows.count() == 2  # both sites' Exampleucel orders; Samplecel is Northwind's
    assert page.locator(f"tr[data-order-id='{orders['waiting'].id}']").count() == 0
    rows = page.locator(f"tr[data-order-id='{held.id}']")
    assert held.patient_pseudonym in rows.first.inner_text()
    page.locator("#alerts li[data-kind='temperature_excursion']").wait_for()
    assert page.get_by_test_id("acknowledge").count() == 0
    rows.first.click()
    page.get_by_test_id("detail").wait_for(state="visible")
    assert page.get_by_test_id("detail-title").inner_text() == held.patient_pseudonym
    body = page.locator("body").inner_text()
    assert "Zz-Testpatient" not in body and "MRN-SYN" not in body
    page.screenshot(path=str(screenshots / "tower-manufacturer-view.png"))
