"""Per-site FHIR profiles: ``mappings/fhir/<profile>.yaml`` (``default.yaml`` when a site
names none). Importing this module registers the ``fhir`` checker for ``v2v mappings check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway import mapping_check
from gateway.mapping_files import MappingFileError, line_of, load_model, load_yaml, mappings_dir
from gateway.sites import SiteConfig, SiteDirectory

DEFAULT_PROFILE = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemValue(_Strict):
    system: str = Field(min_length=1)
    value: str = Field(min_length=1)


class TherapyCode(_Strict):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    therapy: str = Field(min_length=1, description="A code from mappings/therapies")


class Identifiers(_Strict):
    placer_system: str = Field(description="Identifier.system of the hospital's order number")
    mrn_system: str = Field(description="Identifier.system of the hospital's MRN")


class OutboundProfile(_Strict):
    mode: Literal["task", "message"] = Field(
        default="task",
        description="task: conditional PUT Task?identifier=…; message: POST $process-message",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict, description="Static request headers")


class FhirProfile(_Strict):
    site: str | None = Field(default=None, description="Site id (mappings/sites) it serves")
    identifiers: Identifiers
    site_identifiers: list[SystemValue] = Field(
        default_factory=list,
        description="Organization/Location identifiers in an inbound bundle that mean this site",
    )
    therapy_codes: list[TherapyCode] = Field(min_length=1)
    outbound: OutboundProfile = Field(default_factory=OutboundProfile)

    @model_validator(mode="after")
    def _unique_codes(self) -> FhirProfile:
        seen: set[tuple[str, str]] = set()
        for entry in self.therapy_codes:
            key = (entry.system, entry.code)
            if key in seen:
                raise ValueError(f"therapy code {entry.system}|{entry.code} is listed twice")
            seen.add(key)
        return self

    def therapy_for(self, system: str | None, code: str | None) -> str | None:
        return next(
            (
                entry.therapy
                for entry in self.therapy_codes
                if entry.code == code and (system is None or entry.system == system)
            ),
            None,
        )

    def coding_for(self, therapy: str) -> TherapyCode | None:
        return next((entry for entry in self.therapy_codes if entry.therapy == therapy), None)

    def means_this_site(self, system: str | None, value: str | None) -> bool:
        return any(
            entry.value == value and (system is None or entry.system == system)
            for entry in self.site_identifiers
        )


@dataclass(frozen=True)
class FhirProfiles:
    profiles: dict[str, FhirProfile]

    def get(self, name: str | None) -> FhirProfile:
        return self.profiles.get(name or DEFAULT_PROFILE) or self.profiles[DEFAULT_PROFILE]

    def for_site(self, site: SiteConfig | None) -> FhirProfile:
        if site is not None and site.outbound.protocol == "fhir" and site.outbound.profile:
            return self.get(site.outbound.profile)
        for profile in self.profiles.values():
            if site is not None and profile.site == site.id:
                return profile
        return self.profiles[DEFAULT_PROFILE]

    def site_profiles(self) -> list[FhirProfile]:
        return [profile for profile in self.profiles.values() if profile.site]


def load_profiles(directory: Path | None = None) -> FhirProfiles:
    folder = (directory or mappings_dir()) / "fhir"
    profiles = {path.stem: load_model(path, FhirProfile) for path in sorted(folder.glob("*.yaml"))}
    if DEFAULT_PROFILE not in profiles:
        raise MappingFileError(folder / f"{DEFAULT_PROFILE}.yaml", None, "the default is missing")
    return FhirProfiles(profiles)


def check(directory: Path) -> int:
    """Every profile parses, names a known site and maps only to known therapies."""
    from gateway.sites import load_sites
    from gateway.therapy_rules import load_rule_book

    profiles = load_profiles(directory)
    therapies = set(load_rule_book(directory).codes())
    sites = load_sites(directory)
    for name, profile in profiles.profiles.items():
        path = directory / "fhir" / f"{name}.yaml"
        _, node = load_yaml(path)
        if profile.site is not None and sites.get(profile.site) is None:
            raise MappingFileError(
                path, line_of(node, ("site",)), f"site '{profile.site}' has no mappings/sites file"
            )
        for index, entry in enumerate(profile.therapy_codes):
            if entry.therapy not in therapies:
                raise MappingFileError(
                    path,
                    line_of(node, ("therapy_codes", index, "therapy")),
                    f"therapy '{entry.therapy}' has no mappings/therapies file",
                )
    for site in sites.sites.values():
        if site.outbound.protocol == "fhir" and site.outbound.profile not in (
            None,
            *profiles.profiles,
        ):
            raise MappingFileError(
                directory / "sites" / f"{site.id}.yaml",
                None,
                f"outbound.profile '{site.outbound.profile}' has no mappings/fhir file",
            )
    return len(profiles.profiles)


@dataclass(frozen=True)
class FhirConfig:
    """What the FHIR adapter reads from ``mappings/``: the sites and their FHIR profiles."""

    sites: SiteDirectory
    profiles: FhirProfiles


def load_config(directory: Path | None = None) -> FhirConfig:
    from gateway.sites import load_sites

    return FhirConfig(load_sites(directory), load_profiles(directory))


mapping_check.register("fhir", check)
