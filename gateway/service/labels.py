"""Labels for an order's units and patient, from the canonical order and site configuration.

The gateway is the only place that knows both the order and the patient, so it decides what
each label may show: the patient's own product bag and wristband carry name and DOB, the
cassette and anything a courier handles carry the CoI identifier only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.domain.model import TherapyOrder, Unit
from gateway.domain.patient import PatientIdentity
from gateway.mapping_check import checked_products
from gateway.mapping_files import mappings_dir
from gateway.sites import SiteDirectory
from labeling import layout
from labeling.coi import CoiIdentifier
from labeling.products import ProductCatalog, load_product_catalog
from labeling.structures import DonationId


class LabelUnavailable(Exception):
    """The order lacks what a label needs (no CoI yet, unit not released...)."""


def label_patient_id(mrn: str) -> str:
    """ISBT patient ids are alphanumeric: MRN punctuation is dropped on the label."""
    return "".join(ch for ch in mrn if ch.isalnum())[:99]


def site_zone(order: TherapyOrder, sites: SiteDirectory) -> ZoneInfo:
    site = sites.get(order.site.id)
    return ZoneInfo(site.timezone if site else "UTC")


def donation_id(unit_id: str) -> DonationId:
    """A 13-character unit id (FIN, year, sequence) as a DIN data structure."""
    if len(unit_id) != 13 or not (unit_id[5:].isascii() and unit_id[5:].isdigit()):
        raise LabelUnavailable(f"unit id {unit_id!r} is not a 13-character DIN-style id")
    return DonationId(fin=unit_id[:5], year=int(unit_id[5:7]), sequence=int(unit_id[7:]))


@dataclass(frozen=True)
class LabelFactory:
    sites: SiteDirectory
    catalog: ProductCatalog

    @classmethod
    def default(cls, sites: SiteDirectory, catalog_path: Path | None = None) -> LabelFactory:
        """The site's product catalogue from the mappings folder (``V2V_MAPPINGS_DIR``, as
        every other mapping), or from ``catalog_path``. A broken file raises
        :class:`~gateway.mapping_files.MappingFileError` with its file, line and reason."""
        if catalog_path is None:
            return cls(sites, checked_products(mappings_dir())[0])
        return cls(sites, load_product_catalog(catalog_path))

    def product_label(
        self,
        order: TherapyOrder,
        unit: Unit,
        kind: layout.LabelKind,
        patient: PatientIdentity | None,
    ) -> layout.LabelData:
        if not order.coi:
            raise LabelUnavailable("the order has no CoI identifier yet (enrol it first)")
        code = unit.product_code or order.therapy.product_code
        if code is None:
            raise LabelUnavailable(f"no product code for unit {unit.unit_id}")
        product = self.catalog[code]
        zone = site_zone(order, self.sites)
        collected = unit.collected_at or order.milestones.collected_at
        if collected is None or unit.expires_at is None:
            raise LabelUnavailable(f"unit {unit.unit_id} needs collection and expiry times")
        with_patient = patient if kind.may_carry_patient else None
        return layout.LabelData(
            kind=kind,
            coi=CoiIdentifier.from_value(order.coi),
            unit=donation_id(unit.unit_id),
            product=product.product_code(unit.division or "00"),
            product_description=product.description.removeprefix("SITE-LOCAL: "),
            collected=collected.astimezone(zone),
            expires=unit.expires_at.astimezone(zone),
            storage=product.storage,
            patient=_label_identity(with_patient),
        )

    def wristband(self, order: TherapyOrder, patient: PatientIdentity) -> layout.LabelData:
        if not order.coi:
            raise LabelUnavailable("the order has no CoI identifier yet (enrol it first)")
        identity = _label_identity(patient)
        assert identity is not None
        return layout.LabelData(
            kind=layout.LabelKind.WRISTBAND,
            coi=CoiIdentifier.from_value(order.coi),
            patient=identity,
        )


def _label_identity(patient: PatientIdentity | None) -> layout.PatientIdentity | None:
    if patient is None:
        return None
    if patient.birth_date is None:
        raise LabelUnavailable("the patient's date of birth is needed on their own label")
    name = ", ".join(part for part in (patient.family_name.upper(), patient.given_name) if part)
    return layout.PatientIdentity(
        name=name, birth_date=patient.birth_date, patient_id=label_patient_id(patient.mrn)
    )


def in_site_zone(value: datetime, zone: ZoneInfo) -> datetime:
    """Label times are wall-clock times in the site's zone."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value
