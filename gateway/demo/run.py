"""The demo's journey: the sandbox, the happy-path scenario, a FHIR site, the outputs."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from fixtures.library import find, load_library
from fixtures.replay import Replay, StepResult, Target, load_scenario
from fixtures.sandbox import Sandbox
from fixtures.simulators import captured
from gateway.demo.report import (
    Timeline,
    outbound_summary,
    partner_leaks,
    write_custody_report,
    write_labels,
)

ACTORS = {
    "hl7v2": "St Mary's EHR",
    "manufacturer-webhook": "Helix Bio",
    "courier-webhook": "Polar Express",
    "courier-logger": "Polar Express",
    "fhir": "Lakeside EHR",
}


class DemoFailed(Exception):
    pass


def run_demo(out: Path, console: Console) -> int:
    """Run the journey; 0 when the order is INFUSED, every step answered as expected, the
    audit chain verifies and no partner other than the EHR saw the patient's identity."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "labels", ignore_errors=True)
    (out / "labels").mkdir()
    database = out / "vein2vein-demo.db"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=60)
    seen_before = len(captured())
    console.rule("[bold]vein2vein demo: one autologous CAR-T order, vein to vein")
    try:
        with Sandbox.start(database, start_at=start, owned=True) as world:
            _banner(console, world, database)
            timeline = Timeline(console, world.clock)
            order = _journey(world, timeline)
            _second_site(world, timeline)
            world.drain()
            timeline.show()
            write_labels(world, order, out / "labels")
            summary = outbound_summary(world, order)
            leaks = partner_leaks(since=seen_before)
            chain_ok = write_custody_report(world, order, timeline, summary, out)
            _closing(console, world, order, summary, leaks, chain_ok, out)
            if leaks:
                raise DemoFailed(f"patient identity reached a partner: {leaks}")
            if not chain_ok:
                raise DemoFailed("the audit chain does not verify")
    except DemoFailed as failure:
        console.print(f"[bold red]demo failed:[/] {failure}")
        return 1
    return 0


def _banner(console: Console, world: Sandbox, database: Path) -> None:
    host, port = world.mllp
    console.print(f"database   {database} (SQLite, WAL)   simulated start {world.clock():%Y-%m-%d}")
    console.print(f"gateway    {world.url}  (OpenAPI {world.url}/docs)   MLLP {host}:{port}")
    console.print(
        f"simulators EHR MLLP {world.ehr['st-mary'].endpoint} · FHIR {world.fhir.base_url} · "
        f"Helix Bio {world.portals['helix-bio'].url} · Polar Express "
        f"{world.couriers['polar-express'].url} · ERP {world.erp.address}\n"
    )


def _who(step: dict[str, Any]) -> str:
    if "send" in step:
        protocol = find(step["send"], LIBRARY).protocol
        return ACTORS.get(protocol, protocol)
    if "scan" in step:
        return str(step["scan"].get("user", "scanner"))
    return str(step.get("person") or step.get("source") or "gateway")


LIBRARY = load_library()


def _journey(world: Sandbox, timeline: Timeline) -> dict[str, Any]:
    scenario = load_scenario("happy-path")
    replay = Replay(
        Target(url=world.url, mllp=world.mllp, secrets=world.secrets),
        clock=world.clock,
        advance=world.clock.advance,
        site=scenario.site,
        client=world.http,
        library=LIBRARY,
    )

    def record(result: StepResult) -> None:
        step = scenario.steps[result.number - 1]
        timeline.add(_who(step), _what(step), result)
        if not result.ok:
            raise DemoFailed(f"step {result.number} ({result.title}): {result.detail}")

    replay.run_steps(scenario.steps, on_step=record)
    order = replay.refresh()
    if order is None or order["state"] != "INFUSED":
        raise DemoFailed(f"the order ended in {order and order['state']}, not INFUSED")
    task = world.http.get(f"/fhir/Task/{order['id']}")
    if task.status_code != 200:
        raise DemoFailed(f"FHIR Task read: HTTP {task.status_code}")
    timeline.note("FHIR client", f"reads Task/{order['id']}", task.json().get("status", ""))
    return order


def _what(step: dict[str, Any]) -> str:
    if "send" in step:
        return find(step["send"], LIBRARY).step
    if "scan" in step:
        scan = step["scan"]
        how = "photo" if scan.get("via") == "image" else f"wedge ({scan.get('quirk', 'clean')})"
        band = " + wristband" if scan.get("wristband") else ""
        return f"{scan['checkpoint']} scan of the bag, {how}{band}"
    if "event" in step:
        return f"{step['event'].replace('_', ' ')} on the canonical API"
    if "await" in step:
        return f"the relay delivered and the partner answered: {step['await']}"
    return str(step.get("title", ""))


def _second_site(world: Sandbox, timeline: Timeline) -> None:
    """Lakeside speaks FHIR R4: its order arrives as a transaction Bundle."""
    fixture = find("fhir/01-order-transaction", LIBRARY)
    document = json.loads(fixture.file.read_text(encoding="utf-8"))
    response = world.http.post(
        "/fhir", json=document["body"], headers={"Content-Type": "application/fhir+json"}
    )
    if response.status_code != 200:
        raise DemoFailed(f"Lakeside FHIR order: HTTP {response.status_code} {response.text}")
    found = world.http.get("/orders", params={"site": "lakeside"}).json()["items"]
    if not found:
        raise DemoFailed("the Lakeside FHIR order is not in the gateway")
    timeline.note("Lakeside EHR", "orders over FHIR R4 (transaction Bundle)", found[0]["state"])
    enrolled = world.http.post(
        f"/orders/{found[0]['id']}/events",
        json={"type": "enroll", "at": world.clock().isoformat(), "source": "manufacturer"},
        headers={"X-V2V-Actor": "helix-bio"},
    )
    if enrolled.status_code != 200:
        raise DemoFailed(f"Lakeside enrolment: HTTP {enrolled.status_code} {enrolled.text}")
    timeline.note("Helix Bio", "accepts Lakeside's enrolment", enrolled.json()["order"]["state"])
    world.drain()
    search = world.http.get("/fhir/Task", params={"_count": 5})
    entries = search.json().get("entry", []) if search.status_code == 200 else []
    timeline.note("FHIR client", "searches Tasks", f"HTTP {search.status_code}, {len(entries)}")


def _closing(
    console: Console,
    world: Sandbox,
    order: dict[str, Any],
    summary: dict[str, list[str]],
    leaks: list[str],
    chain_ok: bool,
    out: Path,
) -> None:
    console.print("\n[bold]What the partners received[/] (simulators, over loopback):")
    for partner, lines in summary.items():
        console.print(f"  [bold]{partner:<15}[/] {len(lines):>2}  " + ", ".join(lines[:6]))
    console.print(
        "  patient name/DOB/MRN seen by partners other than the hospital's own EHR: "
        + ("[bold red]" + ", ".join(leaks) + "[/]" if leaks else "[green]none[/]")
    )
    final = world.service.get(order["id"])
    colour = "green" if final.state.value == "INFUSED" and chain_ok else "red"
    console.print(
        f"\n[bold {colour}]{final.state.value}[/] — CoI {final.coi}, "
        f"{len(final.custody_events)} custody events, audit chain "
        f"{'intact' if chain_ok else 'BROKEN'}. Output in {out}/"
    )
