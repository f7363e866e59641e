"""The fixture library: every message has its metadata, the generated index is current,
labels and wedge strings read as their metadata says, SOAP requests match the ERP's schema,
placeholders are the known ones and every patient is synthetic."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

import fixtures.library as library
from fixtures.library import Fixture, find, load_library, problems
from fixtures.replay import load_scenario, scenario_names
from fixtures.templates import fill, placeholders
from labeling.scan import read_image, read_scan

LIBRARY = load_library()
PROTOCOLS = {
    "hl7v2",
    "fhir",
    "manufacturer-webhook",
    "courier-webhook",
    "courier-logger",
    "soap-request",
    "soap-response",
    "label-image",
    "wedge-scan",
}


def test_every_protocol_is_in_the_library() -> None:
    assert {fixture.protocol for fixture in LIBRARY} == PROTOCOLS


def test_every_fixture_has_metadata_and_every_file_is_indexed() -> None:
    assert problems(LIBRARY) == []


def test_the_generated_index_is_current() -> None:
    assert library.main(["--check"]) == 0, "run: python -m fixtures.library"
    index = json.loads(library.INDEX_JSON.read_text())
    assert len(index["fixtures"]) == len(LIBRARY)
    assert {row["name"] for row in index["scenarios"]} == set(scenario_names())


def test_an_undocumented_file_or_missing_metadata_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "fixtures"
    shutil.copytree(library.ROOT, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(library, "ROOT", copy)
    monkeypatch.setattr(library, "SCENARIOS", copy / "scenarios")
    assert problems() == []
    (copy / "hl7v2" / "journey" / "stray.hl7").write_bytes(b"MSH|^~\\&|X\r")
    meta = copy / "fixtures.yaml"
    (copy / "couriers" / "cryoroute-logger-excursion.csv").write_text("Local Time;Probe C\n")
    found = problems()
    assert any("stray" in issue for issue in found), found
    assert any("cryoroute-logger-excursion: no scenario" in issue for issue in found), found
    assert not meta.exists()


@pytest.mark.parametrize("scenario", scenario_names())
def test_scenarios_only_name_fixtures_that_exist(scenario: str) -> None:
    for step in load_scenario(scenario).steps:
        if "send" in step:
            assert isinstance(find(step["send"], LIBRARY), Fixture)


def test_placeholders_are_the_known_ones() -> None:
    known = {"now", "msgid", "placer", "coi", "order_ref", "unit", "tracking", "run"}
    for fixture in LIBRARY:
        if fixture.templated and fixture.protocol != "label-image":
            text = fixture.content().decode("utf-8", "replace")
            seen = set(placeholders(text))
            assert seen <= known, f"{fixture.id}: {seen - known}"
            assert "{{" not in fill(text, datetime.now(UTC), lambda _n, _q: "X"), fixture.id


def test_label_images_decode_to_their_listed_unit_and_coi() -> None:
    images = [f for f in LIBRARY if f.protocol == "label-image"]
    assert len(images) == 3
    for fixture in images:
        assert fixture.file.stat().st_size < 50_000, "keep committed label images small"
        read = read_image(fixture.file.read_bytes())
        assert read.accepted, fixture.id
        assert str(fixture.details["coi"]) in read.raw
        if "unit" in fixture.details:
            assert str(fixture.details["unit"]) in read.raw


def test_wedge_scans_read_as_their_metadata_says() -> None:
    scans = [f for f in LIBRARY if f.protocol == "wedge-scan"]
    assert {"clean", "aim-crlf", "gs-lost", "gs1-datamatrix"} <= {f.member for f in scans}
    for fixture in scans:
        read = read_scan(str(fixture.details["typed"]))
        assert read.accepted == fixture.expected.startswith("accepted"), fixture.id
        assert fixture.response.startswith("green" if read.accepted else "red"), fixture.id


def test_soap_requests_match_the_erp_schema() -> None:
    from lxml import etree  # type: ignore[import-untyped]

    schema = etree.XMLSchema(etree.parse(str(library.ROOT / "erp" / "purchasing.xsd")))
    requests = [f for f in LIBRARY if f.protocol == "soap-request"]
    assert len(requests) == 2
    for fixture in requests:
        payload = etree.fromstring(fixture.content())[0][0]
        assert schema.validate(etree.ElementTree(payload)), schema.error_log


MRN = re.compile(rb"MRN[-_ ]?[A-Z0-9-]*\d")
UNIT = re.compile(rb"\bA99\d{2}\d{2}\d{6}")


def test_synthetic_patients_only() -> None:
    for path in sorted(library.ROOT.rglob("*")):
        if path.suffix not in (".hl7", ".json", ".csv", ".xml", ".yaml") or "INDEX" in path.name:
            continue
        raw = path.read_bytes()
        for mrn in MRN.findall(raw):
            assert mrn.replace(b"-", b"").startswith(b"MRNSYN"), f"{path}: {mrn!r}"
        for segment in raw.replace(b"\n", b"\r").split(b"\r"):
            if segment.startswith(b"PID|"):
                family = segment.split(b"|")[5].split(b"^")[0]
                assert family.lower().startswith(b"zz-") or not family, f"{path}: {family!r}"
        if path.suffix == ".json":
            for family in re.findall(rb'"family":\s*"([^"]*)"', raw):
                assert family.lower().startswith(b"zz-"), f"{path}: {family!r}"


def test_scenario_files_describe_their_outbound_messages() -> None:
    for name in scenario_names():
        document = yaml.safe_load((library.SCENARIOS / f"{name}.yaml").read_text())
        assert document["title"] and document["outbound"], name
        assert "custody" in document, name
