"""Settings read from the environment, in one place, with the defaults an operator expects."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gateway.store.database import database_url


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=database_url)
    host: str = field(default_factory=lambda: os.environ.get("V2V_HOST", "127.0.0.1"))
    http_port: int = field(default_factory=lambda: int(os.environ.get("V2V_HTTP_PORT", "8080")))
    mllp_port: int = field(default_factory=lambda: int(os.environ.get("V2V_MLLP_PORT", "2575")))
    default_facility: str = field(
        default_factory=lambda: os.environ.get("V2V_FACILITY_CODE", "A9999")
    )
