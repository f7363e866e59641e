"""``/scans`` (chain-of-identity checks) and ``/orders/{id}/labels`` (label output)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Forbidden, Principal, auth_config, current_principal, need
from gateway.api.bodies import (
    API_MAX_BYTES,
    IMAGE_FORM_ALLOWANCE,
    IMAGE_MAX_BYTES,
    ContentTooLarge,
    bounded_route,
    one_content_type,
    size_text,
)
from gateway.domain.verification import Checkpoint
from gateway.service.errors import NotFound, ServiceError
from gateway.service.labels import LabelFactory, LabelUnavailable
from gateway.service.scanning import ScanRequest, ScanResult, ScanStation
from labeling import layout
from labeling.render_pdf import render_pdf
from labeling.render_png import render_png
from labeling.render_svg import render_svg
from labeling.render_zpl import render_zpl

#: Every body is read with a ceiling before FastAPI parses it (gateway/api/bodies.py);
#: the photo route has its own, larger one.
router = APIRouter(
    tags=["scans and labels"], route_class=bounded_route(API_MAX_BYTES, "a scan request")
)


class ScanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: Checkpoint
    user: str | None = Field(
        default=None,
        description="The person scanning (development mode); with authentication the "
        "signed-in user is recorded instead",
    )
    unit_scan: str = Field(description="Keyboard-wedge text from the bag's label")
    wristband_scan: str | None = Field(default=None, description="The patient's wristband")
    order_id: str | None = Field(default=None, description="The order being worked on")
    location: str | None = None
    role: str | None = None


def result_body(result: ScanResult) -> dict[str, Any]:
    return {
        "verdict": "green" if result.green else "red",
        "green": result.green,
        "checkpoint": result.checkpoint,
        "user": result.user,
        "reason_code": result.reason_code,
        "reason": result.reason,
        "order_id": result.order_id,
        "coi": result.coi,
        "unit_id": result.unit_id,
        "at": result.at.isoformat() if result.at else None,
        "bedside_complete": result.bedside_complete,
        "version": result.version,
        "notes": list(result.notes),
    }


def station(request: Request) -> ScanStation:
    found: ScanStation = request.app.state.scan_station
    return found


Staff = Annotated[Principal, Depends(current_principal)]


def scanning_user(
    request: Request, principal: Principal, claimed: str | None, claimed_role: str | None
) -> tuple[str, str | None, str | None]:
    """Who goes into the custody log, in what role, and the station's site. With
    authentication that is the signed-in person in their configured role, whatever the
    request claims."""
    if auth_config(request) is None:
        if not claimed:
            raise Forbidden("Sign in first: every verdict is recorded under a name.")
        return claimed, None, claimed_role
    if principal.kind not in ("user", "hospital", "admin"):
        raise Forbidden("Only the treating site's staff scan products.")
    if principal.kind != "admin" and not principal.tenant:
        # The site is what keeps another site's bags off this station's verdicts.
        raise Forbidden("Your sign-in belongs to no site; scans are recorded for a site.")
    need(principal, "u")  # a verdict is written to the order's custody log
    return principal.id, principal.tenant if principal.kind != "admin" else None, principal.role


@router.post("/scans", summary="Check a scanned unit against its order (green or red)")
def scan(body: ScanBody, request: Request, principal: Staff) -> dict[str, Any]:
    """A red verdict is a normal answer (HTTP 200): the check ran and said no."""
    one_content_type(request)
    user, site, role = scanning_user(request, principal, body.user, body.role)
    result = station(request).scan(
        ScanRequest(
            checkpoint=body.checkpoint,
            user=user,
            site=site,
            unit_scan=body.unit_scan,
            wristband_scan=body.wristband_scan,
            order_id=body.order_id,
            location=body.location,
            role=role,
        )
    )
    return result_body(result)


async def scan_image(
    request: Request,
    principal: Staff,
    checkpoint: Annotated[Checkpoint, Form()],
    image: Annotated[UploadFile, File(description="Photo or scan of the label")],
    user: Annotated[str | None, Form()] = None,
    order_id: Annotated[str | None, Form()] = None,
    wristband_scan: Annotated[str | None, Form()] = None,
    location: Annotated[str | None, Form()] = None,
    role: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    one_content_type(request)
    data = await image.read()  # the whole body was read within the route's ceiling
    if len(data) > IMAGE_MAX_BYTES:
        raise ContentTooLarge(
            f"The image is larger than {size_text(IMAGE_MAX_BYTES)}.", max_bytes=IMAGE_MAX_BYTES
        )
    who, site, role = scanning_user(request, principal, user, role)
    result = station(request).scan(
        ScanRequest(
            checkpoint=checkpoint,
            user=who,
            site=site,
            unit_image=data,
            wristband_scan=wristband_scan,
            order_id=order_id,
            location=location,
            role=role,
        )
    )
    return result_body(result)


router.add_api_route(
    "/scans/image",
    scan_image,
    methods=["POST"],
    summary="Check a photographed label",
    route_class_override=bounded_route(
        IMAGE_MAX_BYTES + IMAGE_FORM_ALLOWANCE, "a label photo with its form"
    ),
)


Format = Literal["png", "svg", "pdf", "zpl"]
MEDIA = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "zpl": "application/vnd.zebra.zpl",
}


def render(label: layout.LabelData, fmt: Format) -> bytes:
    if fmt == "png":
        return render_png(label)
    if fmt == "svg":
        return render_svg(label).encode()
    if fmt == "pdf":
        return render_pdf([label])
    return render_zpl(label).encode()


@router.get("/orders/{order_id}/labels/{unit_id}.{fmt}", summary="A unit's label")
def unit_label(
    order_id: str,
    unit_id: str,
    fmt: Format,
    request: Request,
    principal: Staff,
    kind: Literal["bag", "cassette"] = "bag",
) -> Response:
    service = request.app.state.orders
    order = service.get(order_id)
    if not principal.may_see(order):
        raise NotFound(f"No order with id {order_id}.")
    unit = order.unit(unit_id)
    if unit is None:
        raise NotFound(f"Order {order_id} has no unit {unit_id}.")
    label_kind = layout.LabelKind(kind)
    patient = None
    if label_kind.may_carry_patient:
        if not principal.sees_phi(order):
            raise Forbidden(
                "The patient's own bag label carries name and DOB; only the "
                "treating site may print it. Print the cassette label instead."
            )
        patient = service.patient_of(order_id)
        service.record_access(order_id, actor=principal.id, what=f"label:{kind}:{unit_id}")
    factory: LabelFactory = request.app.state.labels
    try:
        label = factory.product_label(order, unit, label_kind, patient)
    except LabelUnavailable as exc:
        raise ServiceError(str(exc)) from exc
    return Response(render(label, fmt), media_type=MEDIA[fmt])


@router.get("/orders/{order_id}/wristband.{fmt}", summary="The patient's wristband label")
def wristband_label(order_id: str, fmt: Format, request: Request, principal: Staff) -> Response:
    service = request.app.state.orders
    order = service.get(order_id)
    if not principal.may_see(order):
        raise NotFound(f"No order with id {order_id}.")
    if not principal.sees_phi(order):
        # The order is theirs to see, so saying why is no leak (as for the bag label).
        raise Forbidden(
            "The wristband carries the patient's name, DOB and MRN; only the treating "
            "site may print it."
        )
    patient = service.patient_of(order_id)
    service.record_access(order_id, actor=principal.id, what="label:wristband")
    if patient is None:
        raise NotFound(f"Order {order_id} has no patient record.")
    factory: LabelFactory = request.app.state.labels
    try:
        label = factory.wristband(order, patient)
    except LabelUnavailable as exc:
        raise ServiceError(str(exc)) from exc
    return Response(render(label, fmt), media_type=MEDIA[fmt])
