"""``v2v demo``: one autologous CAR-T order from referral to bedside infusion.

The demo starts a real gateway on a fresh SQLite file and drives it only through its public
endpoints, the way the hospital, the manufacturer, the courier and the pharmacy would. Time
is simulated (the journey takes weeks), so the timeline reads like a real one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from gateway.api.app import create_app
from gateway.embedded import serve_in_thread
from gateway.service.orders import OrderService
from gateway.store.audit import verify_chain
from gateway.store.database import make_engine
from gateway.store.migrate import upgrade
from gateway.therapy_rules import load_rule_book

#: A synthetic patient: no real person has this name, date of birth or MRN.
DEMO_PATIENT = {
    "mrn": "MRN-SYN-0042",
    "family_name": "Zz-Demopatient",
    "given_name": "Casey",
    "birth_date": "1968-07-21",
    "sex": "F",
}


class SimulatedClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class DemoRun:
    client: httpx.Client
    clock: SimulatedClock
    out: Path
    console: Console
    order_id: str = ""
    version: int = 1
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def step(self, who: str, what: str, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise DemoFailed(f"{what}: HTTP {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        order = body.get("order", body)
        if "version" in order:
            self.version = order["version"]
        status = order.get("status") or body.get("verdict", "")
        self.timeline.append(
            {
                "at": self.clock.now.isoformat(timespec="minutes"),
                "who": who,
                "what": what,
                "status": status,
            }
        )
        self.console.print(
            f"  [dim]{self.clock.now:%Y-%m-%d %H:%M}[/]  [bold]{who:<13}[/] "
            f"{what:<52} [cyan]{status}[/]"
        )
        return body

    def event(
        self,
        who: str,
        what: str,
        kind: str,
        source: str = "hospital",
        person: str | None = None,
        **details: Any,
    ) -> dict[str, Any]:
        body = {
            "type": kind,
            "at": self.clock.now.isoformat(),
            "source": source,
            "actor": {"person": person, "organisation": who},
            "details": details,
        }
        response = self.client.post(
            f"/orders/{self.order_id}/events",
            json=body,
            headers={
                "If-Match": f'"{self.version}"',
                "X-V2V-Actor": person or who,
                "Idempotency-Key": f"demo-{self.order_id}-{self.version}-{kind}",
            },
        )
        return self.step(who, what, response)

    def save(self, name: str, content: bytes) -> Path:
        path = self.out / name
        path.write_bytes(content)
        return path


class DemoFailed(Exception):
    pass


def run_demo(out: Path, console: Console) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for leftover in ("labels",):
        shutil.rmtree(out / leftover, ignore_errors=True)
    database = out / "vein2vein-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    (out / "labels").mkdir()
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    clock = SimulatedClock(datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=60))
    service = OrderService(engine, load_rule_book(), clock=clock)
    console.rule("[bold]vein2vein demo: one autologous CAR-T order, vein to vein")
    console.print(f"database: {database} (SQLite, WAL)   simulated start: {clock.now:%Y-%m-%d}")
    try:
        with (
            serve_in_thread(create_app(service)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            console.print(f"gateway:  {server.url}  (OpenAPI at {server.url}/docs)\n")
            run = DemoRun(client, clock, out, console)
            _journey(run)
            _report(run, service)
    except DemoFailed as failure:
        console.print(f"[bold red]demo failed:[/] {failure}")
        return 1
    finally:
        engine.dispose()
    return 0


def _journey(run: DemoRun) -> None:
    clock, client = run.clock, run.client
    created = run.step(
        "St Mary's EHR",
        "orders Exampleucel (exa-cel) for the patient",
        client.post(
            "/orders",
            headers={"X-V2V-Actor": "ehr.st-mary"},
            json={
                "patient": DEMO_PATIENT,
                "therapy_code": "exa-cel",
                "site": {
                    "id": "st-mary",
                    "name": "St Mary's Cancer Centre",
                    "facility_code": "A9991",
                },
                "clinician": {"id": "dr-0007", "name": "Dr R. Example"},
                "placer_number": "SM-2026-0042",
            },
        ),
    )
    run.order_id = created["id"]
    enrolled = run.event(
        "Helix Bio",
        "accepts enrolment; CoI assigned",
        "enroll",
        source="manufacturer",
        manufacturer_order_id="HX-77001",
    )
    coi = enrolled["order"]["coi"]
    run.console.print(f"  {'':16} chain-of-identity identifier: [bold magenta]{coi}[/]")
    clock.advance(hours=2)
    run.event("St Mary's", "requests a manufacturing slot", "request_slot", person="coord.lee")
    clock.advance(days=1)
    apheresis = clock.now + timedelta(days=7)
    run.event(
        "Helix Bio",
        "confirms slot",
        "confirm_slot",
        source="manufacturer",
        slot_start=(apheresis + timedelta(days=2)).isoformat(),
        apheresis_at=apheresis.isoformat(),
    )
    clock.advance(hours=3)
    run.event(
        "St Mary's",
        "schedules apheresis",
        "schedule_apheresis",
        person="coord.lee",
        apheresis_at=apheresis.isoformat(),
    )
    clock.now = apheresis
    run.event(
        "Apheresis unit",
        "collects cells (unit A9991 26 000101)",
        "collect",
        person="rn.okafor",
        unit={
            "unit_id": "A999126000101",
            "kind": "apheresis",
            "product_code": "S9002",
            "volume_ml": 210,
            "collected_at": clock.now.isoformat(),
        },
    )
    clock.advance(hours=5)
    run.event(
        "Polar Express",
        "picks up dry shipper DS-4471",
        "ship_to_mfg",
        source="courier",
        shipment={
            "leg": "to_manufacturer",
            "courier": "polar-express",
            "tracking_number": "PX100200300",
            "shipper_serial": "DS-4471",
            "logger_id": "LG-9001",
        },
    )
    clock.advance(hours=20)
    run.event(
        "Helix Bio", "receives the apheresis material", "receive_at_mfg", source="manufacturer"
    )
    clock.advance(days=1)
    run.event("Helix Bio", "starts manufacturing", "start_manufacturing", source="manufacturer")
    clock.advance(days=17)
    run.event(
        "Helix Bio",
        "QC release of final product A9991 26 000102",
        "release",
        source="manufacturer",
        unit={
            "unit_id": "A999126000102",
            "kind": "final_product",
            "product_code": "S9101",
            "volume_ml": 68,
            "collected_at": apheresis.isoformat(),
            "expires_at": (clock.now + timedelta(days=180)).isoformat(),
            "storage": "≤ -150 °C",
        },
    )
    _print_labels(run)
    clock.advance(days=1)
    run.event(
        "Polar Express",
        "picks up final product",
        "ship_to_site",
        source="courier",
        shipment={
            "leg": "to_site",
            "courier": "polar-express",
            "tracking_number": "PX100200399",
            "shipper_serial": "DS-4480",
            "logger_id": "LG-9002",
        },
    )
    clock.advance(hours=26)
    bag = (run.out / "labels" / "bag-A999126000102.png").read_bytes()
    _scan(run, "Cell-therapy lab", "receipt scan of the bag photo", "receipt", "pharm.ng", bag)
    run.event("Cell-therapy lab", "records receipt at site", "receive_at_site", person="pharm.ng")
    clock.advance(minutes=30)
    _scan(run, "Cell-therapy lab", "storage scan", "storage", "pharm.ng", bag)
    run.event(
        "Cell-therapy lab",
        "stores in LN2 freezer F-2",
        "store",
        person="pharm.ng",
        location="LN2 freezer F-2",
    )
    clock.advance(days=6)
    _scan(run, "Cell-therapy lab", "thaw scan", "thaw", "pharm.ng", bag)
    run.event("Cell-therapy lab", "thaws and dispenses", "thaw", person="pharm.ng")
    clock.advance(minutes=25)
    band = run.client.get(f"/orders/{run.order_id}/wristband.png").content
    from labeling.scan import read_image

    wristband_text = read_image(band).raw
    _scan(
        run,
        "Bedside",
        "nurse 1 scans bag + wristband",
        "bedside",
        "rn.adeyemi",
        bag,
        wristband=wristband_text,
    )
    verdict = _scan(
        run, "Bedside", "nurse 2 independently scans the bag", "bedside", "rn.brooks", bag
    )
    if not verdict["bedside_complete"]:
        raise DemoFailed("bedside verification did not complete")
    clock.advance(minutes=10)
    run.event("Bedside", "infuses the patient's own cells", "infuse", person="rn.adeyemi")


def _scan(
    run: DemoRun,
    who: str,
    what: str,
    checkpoint: str,
    user: str,
    image: bytes,
    wristband: str | None = None,
) -> dict[str, Any]:
    data = {"checkpoint": checkpoint, "user": user, "order_id": run.order_id}
    if wristband:
        data["wristband_scan"] = wristband
    response = run.client.post(
        "/scans/image", data=data, files={"image": ("label.png", image, "image/png")}
    )
    body = run.step(who, f"{what} → verdict", response)
    if not body["green"]:
        raise DemoFailed(f"{what}: RED {body['reason_code']}: {body['reason']}")
    return body


def _print_labels(run: DemoRun) -> None:
    base = f"/orders/{run.order_id}"
    unit = "A999126000102"
    for name, url in (
        (f"bag-{unit}.png", f"{base}/labels/{unit}.png"),
        (f"bag-{unit}.zpl", f"{base}/labels/{unit}.zpl"),
        (f"cassette-{unit}.png", f"{base}/labels/{unit}.png?kind=cassette"),
        (f"cassette-{unit}.zpl", f"{base}/labels/{unit}.zpl?kind=cassette"),
        (f"labels-{unit}.pdf", f"{base}/labels/{unit}.pdf"),
        ("wristband.png", f"{base}/wristband.png"),
        ("wristband.zpl", f"{base}/wristband.zpl"),
    ):
        response = run.client.get(url)
        if response.status_code != 200:
            raise DemoFailed(f"label {name}: HTTP {response.status_code} {response.text}")
        run.save(f"labels/{name}", response.content)
    run.console.print(f"  {'':16} labels printed to {run.out / 'labels'} (PNG 300 dpi, ZPL, PDF)")


def _report(run: DemoRun, service: OrderService) -> None:
    order = service.get(run.order_id)
    with service.engine.connect() as conn:
        chain = verify_chain(conn)
    table = Table("when (simulated)", "who", "what", "status", title="vein-to-vein timeline")
    for row in run.timeline:
        table.add_row(row["at"].replace("T", " "), row["who"], row["what"], row["status"])
    run.console.print()
    run.console.print(table)
    custody = [event.model_dump(mode="json") for event in order.custody_events]
    report = {
        "order_id": order.id,
        "coi": order.coi,
        "pseudonym": order.patient_pseudonym,
        "therapy": order.therapy.model_dump(),
        "final_state": order.state.value,
        "version": order.version,
        "timeline": run.timeline,
        "custody_events": custody,
        "audit_chain": {"ok": chain.ok, "entries": chain.entries, "broken_at": chain.broken_at},
    }
    run.save("custody-report.json", json.dumps(report, indent=2).encode())
    lines = [
        f"# Custody report — CoI {order.coi}",
        "",
        f"Order {order.id}, therapy {order.therapy.name}, final state **{order.state}**.",
        f"Audit chain: {'intact' if chain.ok else 'BROKEN'} ({chain.entries} entries).",
        "",
        "| when (UTC) | action | who | where | unit | verification |",
        "|---|---|---|---|---|---|",
    ]
    for event in order.custody_events:
        lines.append(
            f"| {event.at:%Y-%m-%d %H:%M} | {event.action.value} | "
            f"{event.who.person or event.who.organisation or '-'} | "
            f"{event.where or '-'} | {event.unit_id or '-'} | "
            f"{event.verification or '-'} |"
        )
    run.save("custody-report.md", ("\n".join(lines) + "\n").encode())
    if order.state.value != "INFUSED" or not chain.ok:
        raise DemoFailed(f"final state {order.state.value}, audit chain ok={chain.ok}")
    run.console.print(
        f"\n[bold green]INFUSED[/] — {len(order.custody_events)} custody events, "
        f"audit chain intact ({chain.entries} entries). Output in {run.out}/"
    )
