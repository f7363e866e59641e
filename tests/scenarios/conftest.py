"""One sandbox (gateway + every partner simulator) for the whole scenario suite: each
scenario replays with its own placer numbers, unit ids and CoIs, so they never collide."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.sandbox import Sandbox


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    folder: Path = tmp_path_factory.mktemp("scenarios")
    with Sandbox.start(folder / "scenarios.db") as sandbox:
        yield sandbox
