"""The scan API as the station uses it: what a verdict records about who scanned."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api.bodies import API_MAX_BYTES, IMAGE_FORM_ALLOWANCE, IMAGE_MAX_BYTES
from gateway.service.labels import LabelFactory
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from labeling.layout import LabelKind
from labeling.render_png import render_png

Prepare = Callable[[str], Any]


def test_a_photographed_label_records_the_scanners_role_as_a_typed_scan_does(
    api: TestClient, service: OrderService, prepare: Prepare
) -> None:
    """The custody log says in what role a person verified, whether the bag was scanned or
    photographed; a photo's verdict used to be recorded with no role at all."""
    prepared = prepare("RECEIVED_AT_SITE")
    order = service.get(prepared.order_id)
    unit = order.unit(prepared.unit_id)
    assert unit is not None
    label = LabelFactory.default(load_sites()).product_label(order, unit, LabelKind.CASSETTE, None)
    answer = api.post(
        "/scans/image",
        data={"checkpoint": "receipt", "user": "pharm.ng", "role": "pharmacist"},
        files={"image": ("bag.png", render_png(label), "image/png")},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["verdict"] == "green", answer.json()
    custody = service.get(prepared.order_id).custody_events[-1]
    assert custody.who.person == "pharm.ng" and custody.who.role == "pharmacist"


# --- body limits and the one Content-Type ----------------------------------------------

BOUNDARY = "v2v-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(fields: dict[str, str], image: bytes) -> bytes:
    """A /scans/image form built by hand, so a test can size it and stream it."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
        'filename="bag.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + image
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def chunks(body: bytes, size: int = 1024 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def label_png(service: OrderService, prepared: Any) -> bytes:
    order = service.get(prepared.order_id)
    unit = order.unit(prepared.unit_id)
    assert unit is not None
    label = LabelFactory.default(load_sites()).product_label(order, unit, LabelKind.CASSETTE, None)
    return render_png(label)


FIELDS = {"checkpoint": "receipt", "user": "pharm.ng", "role": "pharmacist"}


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_oversize_photo_upload_is_413_and_records_nothing(
    sent: str, api: TestClient, service: OrderService, prepare: Prepare
) -> None:
    prepared = prepare("RECEIVED_AT_SITE")
    custody = len(service.get(prepared.order_id).custody_events)
    png = label_png(service, prepared)
    ceiling = IMAGE_MAX_BYTES + IMAGE_FORM_ALLOWANCE
    body = multipart(FIELDS, png + b"\0" * (ceiling + 1 - len(multipart(FIELDS, png))))
    assert len(body) == ceiling + 1

    content = body if sent == "content-length" else chunks(body)
    answer = api.post("/scans/image", content=content, headers={"Content-Type": MULTIPART})

    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "body_too_large" and problem["max_bytes"] == ceiling
    assert problem["instance"] == "/scans/image"
    assert len(service.get(prepared.order_id).custody_events) == custody


def test_a_photo_over_20_mib_inside_the_form_allowance_is_413_too(
    api: TestClient, service: OrderService, prepare: Prepare
) -> None:
    prepared = prepare("RECEIVED_AT_SITE")
    png = label_png(service, prepared)
    image = png + b"\0" * (IMAGE_MAX_BYTES + 1 - len(png))
    answer = api.post("/scans/image", data=FIELDS, files={"image": ("bag.png", image, "image/png")})
    assert answer.status_code == 413, answer.text
    assert answer.json()["code"] == "body_too_large" and "20 MiB" in answer.json()["detail"]


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_a_20_mib_photo_is_still_checked(
    sent: str, api: TestClient, service: OrderService, prepare: Prepare
) -> None:
    prepared = prepare("RECEIVED_AT_SITE")
    png = label_png(service, prepared)
    body = multipart(FIELDS, png + b"\0" * (IMAGE_MAX_BYTES - len(png)))

    content = body if sent == "content-length" else chunks(body)
    answer = api.post("/scans/image", content=content, headers={"Content-Type": MULTIPART})

    assert answer.status_code == 200, answer.text
    assert answer.json()["verdict"] == "green", answer.json()


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_oversize_typed_scan_is_413(sent: str, api: TestClient) -> None:
    body = json.dumps({"checkpoint": "receipt", "unit_scan": "x"}).encode()
    body += b" " * (API_MAX_BYTES + 1 - len(body))
    content = body if sent == "content-length" else chunks(body)
    answer = api.post("/scans", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["max_bytes"] == API_MAX_BYTES


def test_a_scan_with_two_content_types_is_415(
    api: TestClient, service: OrderService, prepare: Prepare
) -> None:
    prepared = prepare("RECEIVED_AT_SITE")
    custody = len(service.get(prepared.order_id).custody_events)
    body = multipart(FIELDS, label_png(service, prepared))
    photo = api.post(
        "/scans/image",
        content=body,
        headers=[("Content-Type", MULTIPART), ("Content-Type", "application/json")],
    )
    assert photo.status_code == 415, photo.text
    assert photo.json()["code"] == "multiple_content_types"
    typed = api.post(
        "/scans",
        content=json.dumps({"checkpoint": "receipt", "unit_scan": "x", "user": "a"}).encode(),
        headers=[("Content-Type", "application/json"), ("Content-Type", "text/plain")],
    )
    assert typed.status_code == 415, typed.text
    assert typed.json()["code"] == "multiple_content_types"
    assert len(service.get(prepared.order_id).custody_events) == custody
