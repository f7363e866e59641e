"""MLLP over TLS: the listener's server context and the outbound client's context.

Plain MLLP carries patients' names and MRNs in clear text, so a hospital whose interface
engine reaches the gateway across anything but a private segment runs it over TLS, often
with client certificates as the proof of which engine is calling. TLS 1.2 is the floor.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

CERT = "V2V_MLLP_TLS_CERT"
KEY = "V2V_MLLP_TLS_KEY"
CLIENT_CA = "V2V_MLLP_TLS_CLIENT_CA"


class MllpSettingsError(ValueError):
    """A V2V_MLLP_* setting or a site's TLS file that cannot be used; says which and why."""


def server_context(env: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """The listener's TLS context from the environment, or None for plain MLLP.

    ``V2V_MLLP_TLS_CERT`` and ``V2V_MLLP_TLS_KEY`` (PEM) turn TLS on; with
    ``V2V_MLLP_TLS_CLIENT_CA`` every connection must also present a certificate that CA
    bundle signed.
    """
    values = os.environ if env is None else env
    cert, key, client_ca = values.get(CERT, ""), values.get(KEY, ""), values.get(CLIENT_CA, "")
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise MllpSettingsError(
            f"{CERT} and {KEY} go together (the certificate and its private key, PEM)"
            + (f"; {CLIENT_CA} needs both" if client_ca else "")
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key, f"{CERT}/{KEY}")
    if client_ca:
        _load_authorities(context, client_ca, CLIENT_CA)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca: str | None = None, cert: str | None = None, key: str | None = None, *, where: str = ""
) -> ssl.SSLContext:
    """A context for connecting to a TLS MLLP receiver: its certificate checked against
    ``ca`` alone (the system's authorities when None) and its host name, and ``cert``/``key``
    presented when the receiver asks for a client certificate. ``where`` names the setting
    in errors."""
    if ca:
        # Only the site's own authority: a hospital's private CA is what vouches for its EHR,
        # not every public one the gateway's host happens to trust.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_authorities(context, ca, f"{where}ca" if where else "ca")
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert or key:
        if not (cert and key):
            raise MllpSettingsError(f"{where}cert and {where}key go together")
        _load_chain(context, cert, key, f"{where}cert/{where}key")
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str, setting: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise MllpSettingsError(f"{setting} ({cert}, {key}) cannot be used: {exc}") from exc


def _load_authorities(context: ssl.SSLContext, bundle: str, setting: str) -> None:
    try:
        context.load_verify_locations(bundle)
    except (OSError, ssl.SSLError) as exc:
        raise MllpSettingsError(f"{setting} ({bundle}) cannot be used: {exc}") from exc
