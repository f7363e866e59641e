"""Who may connect: clients and users, from a YAML file outside the repository.

The file names secrets by environment variable or file path; it never holds one. Password
hashes (scrypt) are not secrets in that sense, but they belong to the site, not the code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.mapping_files import MappingFileError, load_model

Kind = Literal["hospital", "manufacturer", "courier", "erp", "user", "admin"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Client(_Config):
    """A system that calls the gateway: an EHR, a manufacturer portal, a courier, the ERP."""

    id: str = Field(min_length=1)
    kind: Kind
    tenant: str | None = Field(default=None, description="Site, manufacturer or courier id")
    scopes: list[str] = Field(default_factory=list)
    secret_env: str | None = Field(default=None, description="Env var holding client_secret")
    secret_file: Path | None = None
    public_key_file: Path | None = Field(
        default=None, description="PEM public key for private_key_jwt client assertions"
    )
    api_key_env: str | None = Field(
        default=None, description="Env var holding an API key, for partners that cannot do OAuth"
    )

    @model_validator(mode="after")
    def _needs_a_credential(self) -> Client:
        if not (self.secret_env or self.secret_file or self.public_key_file or self.api_key_env):
            raise ValueError(
                f"client {self.id} has no credential (secret_env, secret_file, "
                "public_key_file or api_key_env)"
            )
        if self.kind != "admin" and not self.tenant:
            raise ValueError(f"client {self.id} needs a tenant (site, manufacturer or courier)")
        return self

    def secret(self) -> str | None:
        return _read_secret(self.secret_env, self.secret_file)

    def api_key(self) -> str | None:
        return _read_secret(self.api_key_env, None)


class User(_Config):
    """A person who signs in to the scan station or the control tower."""

    username: str = Field(min_length=1)
    display_name: str | None = None
    kind: Literal["user", "admin"] = "user"
    tenant: str | None = Field(default=None, description="The site the person works at")
    role: str = "pharmacist"
    password_hash: str = Field(description="From `v2v auth hash-password`")


class AuthConfig(_Config):
    signing_key_env: str = Field(
        default="V2V_TOKEN_KEY", description="Env var with the token signing key"
    )
    signing_key_file: Path | None = None
    token_url: str | None = Field(
        default=None,
        description="The token endpoint's public URL, which client assertions must name as "
        "their audience. Set it in production: without it the audience is checked against "
        "the URL of the request itself, which the caller's Host header decides.",
    )
    token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    session_ttl_seconds: int = Field(default=8 * 3600, ge=300)
    clients: list[Client] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)

    def signing_key(self) -> bytes:
        key = _read_secret(self.signing_key_env, self.signing_key_file)
        if not key or len(key) < 32:
            raise MappingFileError(
                Path(self.signing_key_env),
                None,
                f"the token signing key ({self.signing_key_env} or "
                "signing_key_file) must be set and at least 32 characters",
            )
        return key.encode()

    def client(self, client_id: str) -> Client | None:
        return next((client for client in self.clients if client.id == client_id), None)

    def user(self, username: str) -> User | None:
        return next((user for user in self.users if user.username == username), None)


def _read_secret(env: str | None, path: Path | None) -> str | None:
    if env and os.environ.get(env):
        return os.environ[env]
    if path is not None and path.exists():
        return path.read_text(encoding="utf-8").strip()
    return None


def load_auth_config(path: Path | None = None) -> AuthConfig | None:
    """The configuration named by ``V2V_AUTH_FILE``; None means development mode."""
    if path is None:
        named = os.environ.get("V2V_AUTH_FILE")
        if not named:
            return None
        path = Path(named)
    config = load_model(path, AuthConfig)
    config.signing_key()  # fail at start-up, not on the first request
    return config
