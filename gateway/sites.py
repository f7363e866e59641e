"""Treatment sites: ``mappings/sites/*.yaml``. Which protocol reaches each hospital's EHR
is configuration, so a site moves from HL7 v2 to FHIR without a code change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.mapping_files import load_named, mappings_dir


class OutboundTls(BaseModel):
    """MLLP over TLS to the site's endpoint. Paths are PEM files on the gateway's host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: str | None = Field(
        default=None, description="Authorities that signed the EHR's certificate; else the system's"
    )
    cert: str | None = Field(default=None, description="Our client certificate, if asked for")
    key: str | None = Field(default=None, description="The client certificate's private key")


class Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["hl7v2", "fhir", "none"] = "none"
    profile: str | None = Field(default=None, description="Mapping profile for the protocol")
    endpoint: str | None = Field(default=None, description="host:port (MLLP) or base URL")
    tls: OutboundTls | None = Field(default=None, description="MLLP over TLS (hl7v2 only)")


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    facility_code: str = Field(pattern=r"^[A-NP-Z1-9][0-9]{4}$")
    timezone: str = "UTC"
    outbound: Outbound = Field(default_factory=Outbound)


@dataclass(frozen=True)
class SiteDirectory:
    sites: dict[str, SiteConfig]

    def get(self, site_id: str) -> SiteConfig | None:
        return self.sites.get(site_id)


def load_sites(directory: Path | None = None) -> SiteDirectory:
    return SiteDirectory(load_named((directory or mappings_dir()) / "sites", SiteConfig, "id"))
