"""Reading and writing partner JSON by path, and partner date formats, all driven by the
mapping files so a new partner's shape is data, not code.

A path is dotted keys with optional list indexes: ``data.case.coi``, ``events[0].code``.
The empty path ``""`` is the document itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
MISSING = object()


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for key, index in _STEP.findall(path):
        steps.append(int(index) if index else key)
    return steps


def get_path(document: Any, path: str) -> Any:
    """The value at ``path``, or :data:`MISSING` when any step is absent."""
    current = document
    for step in _steps(path):
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return MISSING
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                return MISSING
            current = current[step]
    return current


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted path, creating the objects on the way."""
    steps = [step for step in _steps(path)]
    current: Any = document
    for step in steps[:-1]:
        current = current.setdefault(step, {})
    current[steps[-1]] = value


def parse_time(value: Any, fmt: str, timezone: str = "UTC") -> datetime:
    """A partner timestamp → aware UTC datetime. Raises ValueError with a plain reason.

    ``fmt`` is ``iso8601``, ``epoch_s``, ``epoch_ms`` or a ``strptime`` pattern; naive
    times are in the partner's ``timezone``.
    """
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"expected a number of {'milli' if fmt == 'epoch_ms' else ''}seconds")
        number = float(value)
        try:
            return datetime.fromtimestamp(number / 1000 if fmt == "epoch_ms" else number, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{value!r} is outside the range of dates") from None
    if not isinstance(value, str):
        raise ValueError(f"expected a date-time string ({fmt})")
    if fmt == "iso8601":
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    else:
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            raise ValueError(f"{value!r} does not match the format {fmt!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed.astimezone(UTC)


def format_time(value: datetime, fmt: str, timezone: str = "UTC") -> str | int:
    """The inverse of :func:`parse_time` for outbound payloads."""
    if fmt == "epoch_s":
        return int(value.timestamp())
    if fmt == "epoch_ms":
        return int(value.timestamp() * 1000)
    local = value.astimezone(ZoneInfo(timezone))
    if fmt == "iso8601":
        return local.isoformat().replace("+00:00", "Z")
    return local.strftime(fmt)


def check_time_format(fmt: str) -> None:
    """Raise ValueError for a format the loader should reject."""
    if fmt in ("iso8601", "epoch_s", "epoch_ms"):
        return
    if "%" not in fmt:
        raise ValueError(
            f"time format {fmt!r} must be iso8601, epoch_s, epoch_ms or a strptime pattern"
        )
