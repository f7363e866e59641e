"""Crash recovery, CI size: the full run is ``python -m tests.reliability.crash_mllp``.

A ``v2v serve`` subprocess is SIGKILLed three times while 8 MLLP senders push new orders;
then two gateways share PostgreSQL and one dies mid-relay. Nothing acknowledged may be
lost or doubled, nothing sent may be left behind, no partner may see an effect twice.
"""

from __future__ import annotations

import os

import pytest

from tests.reliability.crash_mllp import run_postgres, run_sqlite
from tests.reliability.harness import postgres_reason

MESSAGES = 600


def test_sigkilled_sqlite_gateway_stores_every_message_once() -> None:
    outcome = run_sqlite(MESSAGES, senders=8, kills=3, budget=60.0, say=lambda _line: None)
    assert outcome.ok, outcome.problems


@pytest.mark.postgres
def test_two_gateways_on_postgres_one_killed_mid_relay_apply_each_item_once() -> None:
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    outcome = run_postgres(
        MESSAGES,
        senders=8,
        budget=60.0,
        restart_postgres=False,
        drain_seconds=60.0,
        say=lambda _line: None,
    )
    assert outcome.ok, outcome.problems


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("V2V_TEST_PG_RESTART") != "1",
    reason="restarts the shared PostgreSQL server; opt in with V2V_TEST_PG_RESTART=1",
)
def test_postgres_restart_mid_load_leaves_no_permanent_error() -> None:
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    outcome = run_postgres(
        MESSAGES,
        senders=8,
        budget=80.0,
        restart_postgres=True,
        drain_seconds=60.0,
        say=lambda _line: None,
    )
    assert outcome.ok, outcome.problems
