"""What the demo prints and writes: the timeline, the labels, the custody report, and what
each partner simulator received."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fixtures.replay import PATIENTS, StepResult
from fixtures.sandbox import MovableClock, Sandbox
from fixtures.simulators import captured


@dataclass
class Timeline:
    console: Console
    clock: MovableClock
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, who: str, what: str, result: StepResult) -> None:
        actual = result.actual
        answer = (
            "/".join(actual["ack"])
            if "ack" in actual
            else actual.get("verdict") or str(actual.get("http_status", ""))
        )
        state = actual.get("state") or actual.get("answered_state") or ""
        self._row(who, what, f"{answer} {state}".strip(), result.ok)

    def note(self, who: str, what: str, result: str) -> None:
        self._row(who, what, result, True)

    def _row(self, who: str, what: str, result: str, ok: bool) -> None:
        at = self.clock()
        self.rows.append(
            {"at": at.isoformat(timespec="minutes"), "who": who, "what": what, "result": result}
        )
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self.console.print(
            f"  {mark} [dim]{at:%Y-%m-%d %H:%M}[/]  [bold]{who:<14}[/] {what[:70]:<70} "
            f"[cyan]{result}[/]"
        )

    def show(self) -> None:
        table = Table("when (simulated)", "who", "what", "answer / state", title="timeline")
        for row in self.rows:
            table.add_row(row["at"].replace("T", " "), row["who"], row["what"], row["result"])
        self.console.print()
        self.console.print(table)


def write_labels(world: Sandbox, order: dict[str, Any], folder: Path) -> list[Path]:
    """The final product's bag and cassette labels and the wristband, as the printers get
    them (ZPL) and as people see them (PNG at 300 dpi, PDF)."""
    written = []
    base = f"/orders/{order['id']}"
    units = [u["unit_id"] for u in order["units"] if u["kind"] == "final_product"]
    wanted = [(f"wristband.{fmt}", f"{base}/wristband.{fmt}") for fmt in ("png", "zpl")]
    for unit in units:
        wanted += [
            (f"bag-{unit}.png", f"{base}/labels/{unit}.png"),
            (f"bag-{unit}.zpl", f"{base}/labels/{unit}.zpl"),
            (f"cassette-{unit}.png", f"{base}/labels/{unit}.png?kind=cassette"),
            (f"cassette-{unit}.zpl", f"{base}/labels/{unit}.zpl?kind=cassette"),
            (f"labels-{unit}.pdf", f"{base}/labels/{unit}.pdf"),
        ]
    for name, url in wanted:
        response = world.http.get(url)
        response.raise_for_status()
        path = folder / name
        path.write_bytes(response.content)
        written.append(path)
    return written


def outbound_summary(world: Sandbox, order: dict[str, Any]) -> dict[str, list[str]]:
    """One line per message each simulator received, in order."""
    summary: dict[str, list[str]] = {}
    for site, receiver in world.ehr.items():
        if receiver.received:
            summary[f"EHR {site}"] = [m.message_type for m in receiver.received]
    if world.fhir.received:
        summary["FHIR lakeside"] = [f"{r.method} {r.path}" for r in world.fhir.received]
    for name, simulator in [*world.portals.items(), *world.couriers.items()]:
        if simulator.requests:
            summary[name] = [f"{r.method} {r.path.split('?')[0]}" for r in simulator.requests]
    soap = [_soap_operation(r.body) for r in world.erp.requests if r.method == "POST"]
    if soap:
        summary["ERP st-mary"] = soap
    return summary


def _soap_operation(body: bytes) -> str:
    from lxml import etree  # type: ignore[import-untyped]

    envelope = etree.fromstring(body)
    payload = envelope[-1][0]
    return str(etree.QName(payload).localname).removesuffix("Request")


def identity_needles() -> set[str]:
    needles = set()
    for patient in PATIENTS.values():
        born = datetime.strptime(patient["dob"], "%Y%m%d").date()
        needles |= {patient["mrn"], patient["family"], patient["given"], *_spellings(born)}
    return {needle.lower() for needle in needles}


def _spellings(born: date) -> set[str]:
    return {born.isoformat(), born.strftime("%Y%m%d"), born.strftime("%d/%m/%Y")}


def partner_leaks(since: int = 0) -> list[str]:
    """Patient identity found in anything a manufacturer, courier or ERP simulator received.
    (The hospital's own EHR and FHIR server are entitled to it and are not scanned.)"""
    needles = identity_needles()
    found = []
    for item in captured()[since:]:
        text = item.body.decode("utf-8", "replace").lower()
        found += [f"{item.partner} {item.method} {item.path}: {n}" for n in needles if n in text]
    return found


def write_custody_report(
    world: Sandbox,
    order: dict[str, Any],
    timeline: Timeline,
    outbound: dict[str, list[str]],
    out: Path,
) -> bool:
    """custody-report.json and .md; True when the audit chain verifies."""
    from gateway.store.audit import verify_chain

    final = world.service.get(order["id"])
    with world.service.engine.connect() as conn:
        chain = verify_chain(conn)
    report = {
        "order_id": final.id,
        "coi": final.coi,
        "pseudonym": final.patient_pseudonym,
        "therapy": final.therapy.model_dump(),
        "final_state": final.state.value,
        "version": final.version,
        "external_ids": final.external_ids.model_dump(mode="json"),
        "timeline": timeline.rows,
        "outbound": outbound,
        "custody_events": [event.model_dump(mode="json") for event in final.custody_events],
        "audit_chain": {"ok": chain.ok, "entries": chain.entries, "broken_at": chain.broken_at},
    }
    (out / "custody-report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    lines = [
        f"# Custody report — CoI {final.coi}",
        "",
        f"Order {final.id}, therapy {final.therapy.name}, final state **{final.state.value}**.",
        f"Audit chain: {'intact' if chain.ok else 'BROKEN'} ({chain.entries} entries).",
        "",
        "| when (UTC) | action | who | where | unit | verification |",
        "|---|---|---|---|---|---|",
    ]
    for event in final.custody_events:
        lines.append(
            f"| {event.at:%Y-%m-%d %H:%M} | {event.action.value} | "
            f"{event.who.person or event.who.organisation or '-'} | {event.where or '-'} | "
            f"{event.unit_id or '-'} | {event.verification or '-'} |"
        )
    lines += ["", "## Messages the partners received", ""]
    for partner, messages in outbound.items():
        lines.append(f"- **{partner}** ({len(messages)}): {', '.join(messages)}")
    (out / "custody-report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bool(chain.ok)
