"""The README's main command: the demo runs end to end on SQLite and exits 0, having talked
to every partner simulator over its real protocol, and no partner but the hospital's own EHR
saw the patient's identity."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from gateway.demo import run_demo
from labeling.scan import read_image


def test_demo_reaches_infused_and_writes_its_outputs(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    assert run_demo(tmp_path, console) == 0
    text = console.export_text()
    assert "INFUSED" in text and "audit chain intact" in text
    assert "✗" not in text, "a step answered differently from its fixture's expectation"
    report = json.loads((tmp_path / "custody-report.json").read_text())
    assert report["final_state"] == "INFUSED" and report["audit_chain"]["ok"]
    assert report["external_ids"]["erp_purchase_order"].startswith("PO")
    assert report["external_ids"]["manufacturer_order_id"]

    outbound = report["outbound"]
    ehr = outbound["EHR st-mary"]
    assert ehr[0] == "ORP^O10" and "RDS^O13" in ehr and len(ehr) >= 10
    assert outbound["helix-bio"] == [
        "POST /api/v2/cases",
        f"POST /api/v2/cases/{report['coi']}/slot-requests",
    ]
    assert outbound["polar-express"] == ["POST /px/v1/shipments", "POST /px/v1/shipments"]
    assert outbound["ERP st-mary"] == ["CreatePurchaseOrder", "PostGoodsReceipt"]
    assert outbound["FHIR lakeside"], "the FHIR site heard nothing"
    assert "none" in text.split("other than the hospital's own EHR:")[1].splitlines()[0]

    actions = [event["action"] for event in report["custody_events"]]
    assert actions[-1] == "infusion" and "thaw" in actions and "receipt" in actions
    labels = tmp_path / "labels"
    bag = next(labels.glob("bag-*.png"))
    read = read_image(bag.read_bytes())
    assert read.accepted and report["coi"] in read.raw
    assert (labels / bag.name.replace(".png", ".zpl")).read_text().startswith("^XA")
    assert (labels / "wristband.png").is_file() and next(labels.glob("labels-*.pdf")).is_file()
    # nothing a courier handles carries the patient's name
    assert "ZZ-TESTPATIENT" not in next(labels.glob("cassette-*.zpl")).read_text().upper()
    assert (tmp_path / "custody-report.md").read_text().startswith("# Custody report")


def test_the_demo_command_exits_cleanly_without_leak_warnings(tmp_path: Path) -> None:
    """As a user runs it: zxing-cpp objects left in caches at shutdown made the command end
    with screens of nanobind "leaked instances" lines."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "from gateway.cli.main import app; app()", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "INFUSED" in done.stdout
    assert "leaked" not in done.stderr
