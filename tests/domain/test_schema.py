"""The published JSON Schema is generated from the model and never drifts from it."""

from __future__ import annotations

import json

import pytest

from gateway.schema import PUBLISHED, SCHEMA_DIR, render


@pytest.mark.parametrize("filename", sorted(PUBLISHED))
def test_checked_in_schema_matches_the_model(filename: str) -> None:
    checked_in = (SCHEMA_DIR / filename).read_text(encoding="utf-8")
    assert checked_in == render(PUBLISHED[filename], filename), (
        f"{filename} is stale: run `python -m gateway.schema` and commit the result"
    )


def test_order_schema_has_no_patient_identity_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "therapy-order.schema.json").read_text())
    text = json.dumps(schema).lower()
    for field in ('"mrn"', '"family_name"', '"given_name"', '"birth_date"'):
        assert field not in text
    assert "coi" in schema["properties"] and "patient_pseudonym" in schema["required"]
