"""The replay says PASS only for what it checked: offline label reads are held to their
metadata, a step that does nothing is a failure, and time that could not pass is said."""

from __future__ import annotations

import dataclasses

from fixtures.library import find, load_library
from fixtures.replay import Replay, Target


def _offline(library: list) -> Replay:  # type: ignore[type-arg]
    return Replay(Target(), library=library)


def test_label_reads_are_held_to_what_their_metadata_says() -> None:
    library = load_library()
    results = _offline(library).run_steps(
        [{"send": f.id} for f in library if f.protocol in ("wedge-scan", "label-image")]
    )
    assert results and all(r.ok for r in results), [r.detail for r in results if not r.ok]
    # A scan that reads differently from its metadata now fails: here a truncated read
    # whose metadata says it is accepted, and a clean one whose metadata names another unit.
    clean = find("labels/wedge-scans#clean", library)
    broken = dataclasses.replace(
        clean,
        id="labels/wedge-scans#broken",
        details={**clean.details, "typed": "=+07000=A99912604200200="},
    )
    other = dataclasses.replace(
        clean, id="labels/wedge-scans#other", expected="accepted, unit A999126099999"
    )
    checked = _offline([*library, broken, other]).run_steps(
        [{"send": broken.id}, {"send": other.id}]
    )
    assert [r.ok for r in checked] == [False, False]
    assert "accepted: expected True, got False" in checked[0].detail
    assert "unit_id" in checked[1].detail


def test_a_step_that_does_nothing_fails_and_unmovable_time_is_said() -> None:
    replay = _offline(load_library())
    typo, waited = replay.run_steps(
        [{"sned": "labels/wedge-scans#clean"}, {"elapse": "1d", "send": "labels/wedge-scans#clean"}]
    )
    assert not typo.ok and "does nothing" in typo.detail
    assert waited.ok and waited.clock_not_moved and "cannot be moved" in waited.clock_not_moved


def test_an_unreachable_gateway_or_an_unknown_fixture_fails_its_step_not_the_run() -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    replay = Replay(Target(mllp=("127.0.0.1", port), timeout=2), library=load_library())
    results = replay.run_steps(
        [
            {"send": "hl7v2/journey/st-mary-orm-o01-new-order"},
            {"send": "hl7v2/no-such-fixture"},
            {"send": "labels/wedge-scans#clean"},
        ]
    )
    assert [r.ok for r in results] == [False, False, True]
    assert "MllpError" in results[0].detail and "no fixture" in results[1].detail


def test_a_placeholder_form_the_replay_does_not_know_is_not_sent_as_text() -> None:
    from datetime import UTC, datetime

    import pytest

    from fixtures.templates import MissingValue, fill

    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert fill("MSH|{{now+2d|hl7}}", now, lambda name, qualifier: "x") == (
        "MSH|20261104090000+0000"
    )
    for text in ("{{now+2w}}", "{{Coi}}", "PID|{{ placer . B }}x"):
        with pytest.raises(MissingValue, match="not a placeholder"):
            fill(text, now, lambda name, qualifier: "x")
