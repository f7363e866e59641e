"""Settings read from the environment, in one place, with the defaults an operator expects."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.store.database import database_url

#: The forms of ``V2V_DATABASE_URL`` the gateway runs on (plain ``postgresql://`` is read as
#: psycopg 3 too).
DATABASE_URL_FORMS = (
    "sqlite:////absolute/path.db, sqlite:///relative/path.db "
    "or postgresql+psycopg://user@host:5432/vein2vein"
)


class DatabaseUrlError(ValueError):
    """``V2V_DATABASE_URL`` is not a URL of a database the gateway can use."""


def checked_database_url() -> str:
    """:func:`database_url`, refused in one sentence when SQLAlchemy could not use it."""
    url = database_url()
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        backend = None
    if backend in ("sqlite", "postgresql"):
        return url
    given = os.environ.get("V2V_DATABASE_URL", "")
    hint = ""
    if "://" not in given and (given.startswith(("/", ".", "~")) or given.endswith(".db")):
        hint = f" (for that file: sqlite:///{os.path.abspath(os.path.expanduser(given))})"
    raise DatabaseUrlError(
        f"V2V_DATABASE_URL is not a database URL the gateway can use: {_shown(given)!r}; "
        f"expected {DATABASE_URL_FORMS}{hint}"
    )


def _shown(url: str) -> str:
    """The URL without its password, if it has one: the message may end up in a log."""
    return re.sub(r"^([^:/]+://[^:/@]*:).*@", r"\1***@", url)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=checked_database_url)
    host: str = field(default_factory=lambda: os.environ.get("V2V_HOST", "127.0.0.1"))
    http_port: int = field(default_factory=lambda: int(os.environ.get("V2V_HTTP_PORT", "8080")))
    mllp_port: int = field(default_factory=lambda: int(os.environ.get("V2V_MLLP_PORT", "2575")))
    default_facility: str = field(
        default_factory=lambda: os.environ.get("V2V_FACILITY_CODE", "A9999")
    )
