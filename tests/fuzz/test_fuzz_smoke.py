"""The fuzzers at CI size: ``python -m tests.fuzz.fuzz_all`` runs 100,000 inputs.

A fixed seed keeps CI reproducible; the full script takes a fresh one each run.
"""

from __future__ import annotations

from tests.fuzz.fuzz_all import fuzz


def test_every_protocol_refuses_fuzzed_input_in_its_own_error_form() -> None:
    report = fuzz(10_000, seed=20261102, seconds=40.0)
    summary = "\n".join(report.lines())
    assert report.total >= 200, summary
    assert set(report.inputs) >= {"http_api", "scans", "er7_inbound", "fhir", "webhooks"}, summary
    assert not report.findings, summary
