"""`v2v scan` and `v2v label` against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from labeling.scan import read_image

runner = CliRunner()


@pytest.fixture(autouse=True)
def same_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the `service` fixture's SQLite file, so the CLI sees the prepared orders
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{tmp_path / 'v2v.db'}")


def test_scan_green_exits_0_and_red_exits_3(prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED")
    green = runner.invoke(
        app,
        ["scan", prepared.bag_text, "--checkpoint", "thaw", "--user", "pharm.one"],
        env={"COLUMNS": "200"},
    )
    assert green.exit_code == 0, green.output
    assert "GREEN" in green.output
    red = runner.invoke(
        app,
        ["scan", prepared.bag_text, "--checkpoint", "bedside", "--user", "pharm.one"],
        env={"COLUMNS": "200"},
    )
    assert red.exit_code == 3 and "wrong_step" in red.output
    nameless = runner.invoke(app, ["scan", prepared.bag_text])
    assert nameless.exit_code == 2


def test_label_writes_a_decodable_png_and_zpl(prepare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED")
    png = tmp_path / "bag.png"
    result = runner.invoke(app, ["label", prepared.order_id, prepared.unit_id, "--out", str(png)])
    assert result.exit_code == 0, result.output
    read = read_image(png.read_bytes())
    assert read.accepted and prepared.coi in read.raw
    zpl = runner.invoke(
        app, ["label", prepared.coi, prepared.unit_id, "--kind", "cassette", "--format", "zpl"]
    )
    assert zpl.exit_code == 0 and zpl.output.startswith("^XA")
    assert "ZZ-TESTPATIENT" not in zpl.output.upper()
    missing = runner.invoke(app, ["label", prepared.order_id, "A999126999999"])
    assert missing.exit_code == 1


def test_a_label_showing_the_patient_is_audited_as_a_phi_read(prepare, service) -> None:  # type: ignore[no-untyped-def]
    from gateway.store import audit

    prepared = prepare("STORED")

    def reads() -> list[object]:
        with service.engine.connect() as conn:
            entries = audit.entries(conn, prepared.order_id)
            return [e.payload for e in entries if e.action == "phi.read"]

    cassette = runner.invoke(
        app, ["label", prepared.order_id, prepared.unit_id, "--kind", "cassette", "--format", "zpl"]
    )
    assert cassette.exit_code == 0, cassette.output
    assert reads() == []  # a cassette label carries no patient details
    wristband = runner.invoke(
        app, ["label", prepared.order_id, "--kind", "wristband", "--format", "zpl"]
    )
    assert wristband.exit_code == 0, wristband.output
    assert reads() == [{"what": "label:wristband"}]
