"""``v2v fixtures list`` in an 80-column terminal: every fixture whole and readable.

Five columns of free text do not fit 80 columns: the table squeezed step, expected and
response to nothing while the id column took the rest. Narrow terminals get one block per
fixture instead; wide ones keep the table.
"""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from fixtures.library import load_library
from gateway.cli.main import app


def listed(columns: int) -> str:
    """``COLUMNS=<columns> v2v fixtures list`` as a person would run it."""
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "fixtures", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def words(text: str) -> str:
    return " ".join(text.split())


def test_at_80_columns_each_fixture_shows_its_id_step_expected_and_response() -> None:
    output = listed(80)
    lines = output.splitlines()

    assert max(len(line) for line in lines) <= 80
    assert "…" not in output  # nothing cut short
    stripped = {line.strip() for line in lines}
    flowing = words(output)
    library = load_library()
    for fixture in library:
        assert fixture.id in stripped, f"{fixture.id} is not on a line of its own"
        entry = f"{fixture.step}: {fixture.expected} → {fixture.response}"
        assert words(entry) in flowing, f"{fixture.id}: {entry!r} is not listed whole"
    # Grouped by protocol, each group headed with its count.
    for protocol in {fixture.protocol for fixture in library}:
        count = sum(fixture.protocol == protocol for fixture in library)
        assert f"{protocol} ({count})" in stripped
    assert "scenarios" in output and "happy-path" in output


def test_a_wide_terminal_keeps_the_table() -> None:
    result = CliRunner().invoke(app, ["fixtures", "list"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "protocol" in line)
    assert all(name in header for name in ("step", "expected", "response", "id"))
