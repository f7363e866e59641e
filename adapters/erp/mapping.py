"""``mappings/erp/<site>.yaml``: how to reach a hospital's purchasing service and which
vendor and material numbers its ERP uses for our manufacturers and therapies."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from adapters.manufacturers.mapping import Endpoint
from gateway import mapping_check
from gateway.mapping_files import DEFAULT_MAPPINGS_DIR, MappingFileError, load_named, mappings_dir

REPOSITORY = DEFAULT_MAPPINGS_DIR.parent
BINDING = "{urn:vein2vein:erp:purchasing:1:wsdl}PurchasingBinding"
OPERATIONS = ("CreatePurchaseOrder", "PostGoodsReceipt", "GetPurchaseOrderStatus")


class ErpMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str
    name: str
    wsdl: str = Field(description="WSDL path (relative to the repository) or URL")
    endpoint: Endpoint
    timeout_seconds: float = Field(default=20, gt=0)
    plant: str
    cost_center: str | None = None
    vendors: dict[str, str] = Field(description="manufacturer id → ERP vendor number")
    materials: dict[str, str] = Field(description="therapy code → ERP material number")

    def wsdl_location(self) -> str:
        if "://" in self.wsdl:
            return self.wsdl
        path = Path(self.wsdl)
        return str(path if path.is_absolute() else REPOSITORY / path)


def erp_folder(directory: Path | None = None) -> Path:
    """Where the ERP mappings are: ``<site>.yaml`` each."""
    return (directory or mappings_dir()) / "erp"


def load_erp(directory: Path | None = None) -> dict[str, ErpMapping]:
    folder = erp_folder(directory)
    found = load_named(folder, ErpMapping, "site")
    for site, mapping in found.items():
        file = folder / f"{site}.yaml"
        if "://" not in mapping.wsdl:
            location = Path(mapping.wsdl_location())
            if not location.is_file():
                raise MappingFileError(file, None, f"wsdl: no file at {location}")
            _check_wsdl(file, location)
        address = mapping.endpoint.base_url()
        if not address.startswith(("http://", "https://")):
            # Else every delivery would fail as "unreachable" and be retried to the end.
            raise MappingFileError(file, None, f"endpoint: {address!r} is not an http(s) URL")
    return found


def _check_wsdl(file: Path, location: Path) -> None:
    """The WSDL must be a WSDL: a broken one would fail every delivery, one by one."""
    from lxml import etree  # type: ignore[import-untyped]

    try:
        root = etree.parse(str(location), etree.XMLParser(resolve_entities=False)).getroot()
    except etree.XMLSyntaxError as exc:
        raise MappingFileError(file, None, f"wsdl: {location} is not XML: {exc}") from exc
    if etree.QName(root).localname != "definitions":
        raise MappingFileError(file, None, f"wsdl: {location} is not a WSDL (no definitions)")
    problem = wsdl_problem(str(location))
    if problem:
        raise MappingFileError(file, None, f"wsdl: {location}: {problem}")


def wsdl_problem(location: str) -> str | None:
    """Why zeep cannot call our operations through this WSDL, or None. A missing schema
    import, another binding or a missing operation would otherwise fail every delivery."""
    import zeep

    try:
        client = zeep.Client(location)  # type: ignore[no-untyped-call]
    except Exception as exc:  # zeep, lxml, requests and OS errors alike
        return f"cannot be loaded ({type(exc).__name__}: {str(exc)[:300]})"
    binding = client.wsdl.bindings.get(BINDING)
    if binding is None:
        found = ", ".join(sorted(client.wsdl.bindings)) or "none"
        return f"has no binding {BINDING} (it has: {found})"
    missing = []
    for name in OPERATIONS:
        try:
            binding.get(name)  # type: ignore[no-untyped-call]
        except ValueError:
            missing.append(name)
    if missing:
        return f"binding {BINDING} lacks the operation(s) {', '.join(missing)}"
    return None


@functools.lru_cache(maxsize=8)
def _cached(folder: Path) -> dict[str, ErpMapping]:
    return load_erp(folder)


def erp_for(site: str, directory: Path | None = None) -> ErpMapping | None:
    return _cached(directory or mappings_dir()).get(site)


mapping_check.register("erp", lambda folder: len(load_erp(folder)))
