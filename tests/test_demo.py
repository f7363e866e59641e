"""The README's main command: the demo runs end to end and exits 0."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from gateway.demo import run_demo
from labeling.scan import read_image


def test_demo_reaches_infused_and_writes_its_outputs(tmp_path: Path) -> None:
    console = Console(record=True, width=140)
    assert run_demo(tmp_path, console) == 0
    text = console.export_text()
    assert "INFUSED" in text and "audit chain intact" in text
    report = json.loads((tmp_path / "custody-report.json").read_text())
    assert report["final_state"] == "INFUSED" and report["audit_chain"]["ok"]
    labels = tmp_path / "labels"
    bag = next(labels.glob("bag-*.png"))
    read = read_image(bag.read_bytes())
    assert read.accepted and report["coi"] in read.raw
    assert (labels / bag.name.replace(".png", ".zpl")).read_text().startswith("^XA")
    # nothing a courier handles carries the patient's name
    assert "ZZ-DEMOPATIENT" not in next(labels.glob("cassette-*.zpl")).read_text().upper()
