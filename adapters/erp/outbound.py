"""The relay transport for ``erp:<site>``: a purchase order when the slot is confirmed,
a goods receipt when the product is received at site.

The purchase order number is kept on the order (``external_ids.erp_purchase_order``);
the outbox idempotency key is the ERP request id, so a retry after a lost answer returns
the same purchase order instead of raising a second one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.erp.mapping import ErpMapping, erp_folder, load_erp
from adapters.erp.soap import PurchaseOrderStatus, PurchasingService
from gateway.domain.errors import TransitionRefused
from gateway.domain.states import OrderState
from gateway.domain.tracking import link_reference
from gateway.mapping_files import MappingFileError
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Transport
from gateway.sites import load_sites
from gateway.store.outbox import OutboxItem


def transport(
    service: OrderService,
    *,
    mappings: Mapping[str, ErpMapping] | None = None,
    mappings_dir: Path | None = None,
    addresses: Mapping[str, str] | None = None,
) -> Transport:
    sites = dict(mappings) if mappings is not None else load_erp(mappings_dir)
    connections: dict[str, PurchasingService] = {}
    zones: dict[str, ZoneInfo] = {}

    def zone(site: str) -> ZoneInfo:
        """The site's clock: finance posts by the hospital's calendar, not UTC's."""
        if site not in zones:
            try:
                config = load_sites(mappings_dir).get(site)
            except MappingFileError as exc:
                raise DeliveryError(f"site mappings cannot be read: {exc}") from exc
            zones[site] = ZoneInfo(config.timezone if config else "UTC")
        return zones[site]

    def connect(site: str) -> PurchasingService:
        mapping = sites.get(site)
        if mapping is None and mappings is None:
            # Notices go to a site once its mapping file exists (notifications.has_erp),
            # which may be since this transport read the folder: read it again.
            try:
                sites.update(load_erp(mappings_dir))
            except MappingFileError as exc:
                raise DeliveryError(f"ERP mappings cannot be read: {exc}") from exc
            mapping = sites.get(site)
        if mapping is None:
            raise DeliveryError(f"no ERP mapping for site {site!r}", permanent=True)
        if site not in connections:
            try:
                connections[site] = PurchasingService(mapping, (addresses or {}).get(site))
            except Exception as exc:  # zeep, lxml, requests and OS errors alike
                # A WSDL behind a URL is first read here; the ERP may be down or the
                # file being mended, so the notice waits, saying which file names it.
                file = erp_folder(mappings_dir) / f"{site}.yaml"
                raise DeliveryError(
                    f"ERP {site}: the WSDL {mapping.wsdl_location()} named in {file} cannot "
                    f"be used: {type(exc).__name__}: {str(exc)[:300]}"
                ) from exc
        return connections[site]

    def deliver(item: OutboxItem) -> None:
        site = item.destination.split(":", 1)[1]
        if item.kind not in ("erp.create_purchase_order", "erp.goods_receipt"):
            return
        erp = connect(site)
        if not item.order_id:
            raise DeliveryError("an ERP notice needs its order", permanent=True)
        order = service.get(item.order_id)
        if item.kind == "erp.create_purchase_order":
            if order.external_ids.erp_purchase_order:
                return  # raised already (by the hospital, or a delivery whose ack was lost)
            if order.state is OrderState.CANCELLED:
                # The notice waited (ERP down, a fault) while the order was cancelled: a
                # purchase order now would commit the hospital to a therapy never made.
                raise DeliveryError(
                    f"order {order.id} was cancelled before its purchase order was raised; "
                    f"none was raised. If an earlier attempt timed out, the ERP may hold one "
                    f"under request id {request_id(item)}: check there.",
                    permanent=True,
                )
            vendor = erp.mapping.vendors.get(order.therapy.manufacturer)
            material = erp.mapping.materials.get(order.therapy.code)
            if vendor is None or material is None:
                raise DeliveryError(
                    f"ERP mapping for {site} lacks vendor for {order.therapy.manufacturer!r} "
                    f"or material for {order.therapy.code!r}",
                    permanent=True,
                )
            when = order.milestones.slot_start or order.milestones.apheresis_at or order.created_at
            number = erp.create_purchase_order(
                request_id=request_id(item),
                vendor=vendor,
                material=material,
                delivery=when.astimezone(zone(site)).date(),
                reference=order.coi or order.id,
            )
            try:
                with service.uow() as uow:
                    service.amend(
                        order.id,
                        link_reference("erp_purchase_order", number),
                        action="reference_linked",
                        actor=f"erp:{site}",
                        uow=uow,
                    )
                    uow.commit()
            except TransitionRefused as exc:
                # Another number was recorded while the ERP answered (by hand, say): asking
                # again would only repeat the clash, and which one stands is a person's call.
                raise DeliveryError(
                    f"the ERP raised purchase order {number} for order {order.id} (request id "
                    f"{request_id(item)}), but the order meanwhile got another: "
                    f"{exc.message} Decide which stands, and cancel the other in the ERP.",
                    permanent=True,
                ) from exc
            return
        if not order.external_ids.erp_purchase_order:
            raise DeliveryError(f"order {order.id} has no purchase order yet; retrying later")
        erp.post_goods_receipt(
            request_id=request_id(item),
            purchase_order=order.external_ids.erp_purchase_order,
            received_at=(order.milestones.received_at_site_at or _received(item)).astimezone(
                zone(site)
            ),
            batches=[unit.unit_id for unit in order.final_products()],
        )

    return deliver


def request_id(item: OutboxItem) -> str:
    """The ERP's request id (at most 40 characters), stable across retries of one item."""
    return "V2V-" + hashlib.sha256(item.idempotency_key.encode()).hexdigest()[:32]


def _received(item: OutboxItem) -> datetime:
    value = item.payload.get("received_at")
    if not value:
        raise DeliveryError("the goods receipt notice has no receipt time", permanent=True)
    return datetime.fromisoformat(value)


def purchase_order_status(
    site: str, purchase_order: str, *, address: str | None = None
) -> PurchaseOrderStatus:
    """Read a purchase order's status from the site's ERP."""
    mapping = load_erp().get(site)
    if mapping is None:
        raise LookupError(f"no ERP mapping for site {site!r}")
    return PurchasingService(mapping, address).status(purchase_order)
