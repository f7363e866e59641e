"""``v2v mappings check``: validate every mapping file before a site goes live.

Each adapter registers a checker here: a function that loads its files from the mappings
folder and raises :class:`MappingFileError` (file, line, reason) on the first problem, or
returns how many files it validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.mapping_files import MappingFileError

Checker = Callable[[Path], int]


def _therapies(folder: Path) -> int:
    from gateway.therapy_rules import load_rule_book

    return len(load_rule_book(folder).therapies)


def _sites(folder: Path) -> int:
    from gateway.sites import load_sites

    return len(load_sites(folder).sites)


#: name → checker. Adapters append theirs (see adapters/*/mapping.py).
CHECKERS: dict[str, Checker] = {"therapies": _therapies, "sites": _sites}


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
        "labeling.products",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
