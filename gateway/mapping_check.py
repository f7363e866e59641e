"""``v2v mappings check``: validate every mapping file before a site goes live.

Each adapter registers a checker here: a function that loads its files from the mappings
folder and raises :class:`MappingFileError` (file, line, reason) on the first problem, or
returns how many files it validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.mapping_files import MappingFileError, line_of, load_yaml
from labeling.products import ProductCatalog

Checker = Callable[[Path], int]


def _therapies(folder: Path) -> int:
    from gateway.therapy_rules import load_rule_book

    return len(load_rule_book(folder).therapies)


def _sites(folder: Path) -> int:
    from gateway.sites import load_sites

    return len(load_sites(folder).sites)


def checked_products(folder: Path) -> tuple[ProductCatalog, int]:
    """The label product catalogue (``products/*.yaml``), checked entry by entry with
    file and line, and how many files it came from (empty without a products folder)."""
    # The catalogue loader's own per-entry rule, so this check cannot pass an entry the
    # gateway would refuse; the loader itself reports no line numbers.
    from labeling.products import _entry, load_product_catalog

    directory = folder / "products"
    files = sorted(directory.glob("*.yaml"))
    first_seen: dict[str, Path] = {}
    for path in files:
        data, node = load_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise MappingFileError(path, 1, "the file must hold a mapping with a products: list")
        entries = data.get("products", [])
        if not isinstance(entries, list):
            raise MappingFileError(path, line_of(node, ("products",)), "products must be a list")
        for index, raw in enumerate(entries):
            line = line_of(node, ("products", index))
            try:
                code = _entry(raw, path).code
            except ValueError as exc:
                raise MappingFileError(path, line, str(exc).removeprefix(f"{path}: ")) from exc
            if code in first_seen:
                raise MappingFileError(
                    path,
                    line,
                    f"product code {code} is configured twice (also in {first_seen[code]})",
                )
            first_seen[code] = path
    if not files:
        return ProductCatalog({}), 0
    try:
        return load_product_catalog(directory), len(files)
    except ValueError as exc:
        raise MappingFileError(directory, None, str(exc)) from exc


def _products(folder: Path) -> int:
    return checked_products(folder)[1]


#: name → checker. Adapters append theirs (see adapters/*/mapping.py).
CHECKERS: dict[str, Checker] = {
    "therapies": _therapies,
    "sites": _sites,
    "products": _products,
}


def register(name: str, checker: Checker) -> None:
    CHECKERS[name] = checker


@dataclass(frozen=True)
class CheckResult:
    name: str
    files: int
    error: MappingFileError | None


def check_all(folder: Path) -> list[CheckResult]:
    _load_adapter_checkers()
    results = []
    for name, checker in sorted(CHECKERS.items()):
        try:
            results.append(CheckResult(name, checker(folder), None))
        except MappingFileError as exc:
            results.append(CheckResult(name, 0, exc))
    return results


def _load_adapter_checkers() -> None:
    """Adapters register on import; import those that exist."""
    import importlib

    for module in (
        "adapters.hl7v2.mapping",
        "adapters.fhir.mapping",
        "adapters.manufacturers.mapping",
        "adapters.couriers.mapping",
        "adapters.erp.mapping",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
