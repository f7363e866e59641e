"""The therapy rule book: every ``mappings/therapies/*.yaml`` file, validated at load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.domain.rules import TherapyRules
from gateway.mapping_files import MappingFileError, load_named, mappings_dir


@dataclass(frozen=True)
class RuleBook:
    therapies: dict[str, TherapyRules]

    def get(self, code: str) -> TherapyRules | None:
        return self.therapies.get(code)

    def codes(self) -> list[str]:
        return sorted(self.therapies)


def load_rule_book(directory: Path | None = None) -> RuleBook:
    folder = (directory or mappings_dir()) / "therapies"
    therapies = load_named(folder, TherapyRules, "code")
    if not therapies:
        raise MappingFileError(folder, None, "no therapy rule files (*.yaml) found")
    return RuleBook(therapies)
