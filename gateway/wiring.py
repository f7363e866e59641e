"""The composition root for outbound delivery: which transport serves which destination.

Hospitals are reached by the protocol their site file names (HL7 v2 over MLLP or FHIR);
manufacturers, couriers and ERPs by their adapters. Only this module knows all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Relay, RelayPolicy, Transport
from gateway.settings import Settings
from gateway.sites import SiteDirectory, load_sites
from gateway.store.outbox import OutboxItem

if TYPE_CHECKING:
    from gateway.store.checkpoints import Checkpoint

log = logging.getLogger(__name__)


def hospital_transport(sites: SiteDirectory, service: OrderService) -> Transport:
    """Route ``hospital:<site>`` items to the site's EHR protocol."""
    from adapters.fhir.outbound import transport as fhir_transport
    from adapters.hl7v2.outbound import transport as hl7v2_transport

    by_protocol: dict[str, Transport] = {
        "hl7v2": hl7v2_transport(sites, service),
        "fhir": fhir_transport(sites, service),
    }

    def deliver(item: OutboxItem) -> None:
        site_id = item.destination.partition(":")[2]
        site = sites.get(site_id)
        if site is None:
            raise DeliveryError(f"no site file for {site_id!r} (mappings/sites)", permanent=True)
        if site.outbound.protocol == "none":
            return  # the site asked for no status messages: delivered by design
        by_protocol[site.outbound.protocol](item)

    return deliver


def build_relay(
    service: OrderService, sites: SiteDirectory | None = None, *, policy: RelayPolicy | None = None
) -> Relay:
    from adapters import couriers, erp, manufacturers

    sites = sites or load_sites()
    relay = Relay(service.engine, policy=policy, clock=service.clock)
    relay.register("hospital", hospital_transport(sites, service))
    relay.register("manufacturer", manufacturers.transport(service))
    relay.register("courier", couriers.transport(service))
    relay.register("erp", erp.transport(service))
    return relay


async def run_relay(
    service: OrderService, stop: asyncio.Event, settings: Settings, interval: float = 1.0
) -> None:
    """The serve loop's relay: deliver due outbox items until asked to stop."""
    # How long a claim lasts: items a crashed gateway had claimed wait this long for another.
    lease = float(os.environ.get("V2V_RELAY_LEASE_SECONDS", RelayPolicy.lease_seconds))
    relay = build_relay(service, policy=RelayPolicy(lease_seconds=lease))
    while not stop.is_set():
        try:
            stats = await asyncio.to_thread(relay.run_once)
        except Exception:
            log.exception("outbox relay pass failed; retrying")
            stats = None
        busy = stats is not None and (stats.delivered or stats.retried or stats.dead)
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


async def run_checkpoints(service: OrderService, stop: asyncio.Event, settings: Settings) -> None:
    """Sign the audit chain's head periodically, when a signing key is configured."""
    import os

    from gateway.store import checkpoints

    try:
        checkpoints.private_key()
    except checkpoints.CheckpointKeyMissing:
        log.info("no V2V_AUDIT_KEY_FILE: periodic audit checkpoints are off")
        return
    minutes = float(os.environ.get("V2V_AUDIT_CHECKPOINT_MINUTES", "60"))
    export = os.environ.get("V2V_AUDIT_CHECKPOINT_FILE")
    while not stop.is_set():
        try:
            checkpoint = await asyncio.to_thread(_checkpoint_once, service)
            if checkpoint is not None and export:
                from pathlib import Path

                checkpoints.append_export(Path(export), checkpoint)
        except Exception:
            log.exception("audit checkpoint failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=minutes * 60)


def _checkpoint_once(service: OrderService) -> Checkpoint | None:
    from gateway.store import checkpoints

    with service.engine.begin() as conn:
        return checkpoints.create(conn, at=service.clock(), actor="v2v serve")
