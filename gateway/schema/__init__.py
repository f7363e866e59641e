"""The published JSON Schema of the canonical order.

``python -m gateway.schema`` regenerates ``therapy-order.schema.json``; a test fails when
the checked-in file and the model disagree, so partners never code against a stale schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.model import TherapyOrder

SCHEMA_DIR = Path(__file__).resolve().parent
PUBLISHED = {
    "therapy-order.schema.json": TherapyOrder,
    "lifecycle-event.schema.json": LifecycleEvent,
}


def generate(model: Any, filename: str) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://vein2vein.dev/schema/{filename}",
        **schema,
    }


def render(model: Any, filename: str) -> str:
    return json.dumps(generate(model, filename), indent=2, sort_keys=True) + "\n"


def write_all() -> list[Path]:
    written = []
    for filename, model in PUBLISHED.items():
        path = SCHEMA_DIR / filename
        path.write_text(render(model, filename), encoding="utf-8")
        written.append(path)
    return written
