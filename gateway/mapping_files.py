"""Loading declarative YAML mapping files with errors that name the file and line.

Hospital IT edits these files by hand; "validation error at cancellation.hours" is not
enough when the fix is on line 12 of a file among thirty. Every loader goes through
:func:`load_model` so every broken file is reported the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

#: The repository's mappings folder; ``V2V_MAPPINGS_DIR`` overrides it for a site.
DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parent.parent / "mappings"


class MappingFileError(Exception):
    """A mapping file that cannot be used, with where and why."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


def mappings_dir() -> Path:
    import os

    override = os.environ.get("V2V_MAPPINGS_DIR")
    return Path(override) if override else DEFAULT_MAPPINGS_DIR


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The parsed document and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(path, None, f"cannot read file: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingFileError(path, line, f"not valid YAML: {problem}") from exc
    return data, node


def line_of(node: yaml.Node | None, location: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest node along ``location`` that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in location:
        if isinstance(node, yaml.MappingNode):
            match = next(
                (value for name, value in node.value if getattr(name, "value", None) == key),
                None,
            )
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                break
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def load_named(folder: Path, model: type[ModelT], key: str) -> dict[str, ModelT]:
    """Every ``*.yaml`` in ``folder``, by the value of its ``key`` field, which must be the
    file's own name: operators find a partner's file by its id."""
    found: dict[str, ModelT] = {}
    for path in sorted(folder.glob("*.yaml")):
        loaded = load_model(path, model)
        name = getattr(loaded, key)
        if name != path.stem:
            raise MappingFileError(path, 1, f"{key} '{name}' must match the file name")
        found[name] = loaded
    return found


def load_model(path: Path, model: type[ModelT]) -> ModelT:
    """Validate one YAML file against a pydantic model, naming file and line on failure."""
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise MappingFileError(path, 1, "the file must hold a mapping (key: value) at the top")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = tuple(first["loc"])
        dotted = ".".join(str(part) for part in location) or "(top level)"
        raise MappingFileError(path, line_of(node, location), f"{dotted}: {first['msg']}") from exc
