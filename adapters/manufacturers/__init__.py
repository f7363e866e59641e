"""Manufacturer portals: signed webhooks in, REST calls out, shapes from
``mappings/manufacturers/*.yaml``."""

from adapters.manufacturers.inbound import router, translate
from adapters.manufacturers.mapping import ManufacturerMapping, load_manufacturers
from adapters.manufacturers.outbound import transport
from adapters.manufacturers.signing import SignatureError, sign, verify

__all__ = [
    "ManufacturerMapping",
    "SignatureError",
    "load_manufacturers",
    "router",
    "sign",
    "translate",
    "transport",
    "verify",
]
