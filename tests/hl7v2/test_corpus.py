"""Public HL7 v2 samples written by others (../shared/corpus/hl7v2) through the real MLLP
listener: each is accepted or answered with a specific AE/AR; none crashes or hangs.

Twice: as an unknown sender (the corpus facility is no site of ours), and with the
corpus facility claimed by St Mary's profile so the messages reach the deeper mapping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.hl7v2.ack import TABLE_0357
from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.mapping import load_profiles
from adapters.hl7v2.mllp import MllpClient
from gateway.service.orders import OrderService
from gateway.sites import load_sites
from tests.hl7v2.conftest import CORPUS, RunningListener

FILES = sorted(CORPUS.glob("*.hl7"))


def _check(reply: bytes) -> str:
    ack = parse(reply)
    code = ack.get("MSA-1")
    assert code in ("AA", "AE", "AR", "CA", "CE", "CR")
    if code not in ("AA", "CA"):
        err = ack.segment("ERR")
        assert err is not None
        modern = ack.version >= "2.5"
        code_0357 = err.value(3, 1, 1) if modern else err.value(1, 1, 4, 1)
        assert code_0357 in TABLE_0357 and code_0357 != "207"
        assert err.value(8) if modern else ack.get("MSA-3")
    return code


@pytest.mark.skipif(not FILES, reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("claimed", [False, True], ids=["unknown-sender", "claimed-sender"])
def test_every_corpus_message_is_answered_specifically(
    claimed: bool, service: OrderService, mappings_copy: Path
) -> None:
    if claimed:
        profile = mappings_copy / "hl7v2" / "st-mary.yaml"
        profile.write_text(
            profile.read_text().replace(
                "senders:\n",
                "senders:\n  - facility: GHHSFacility\n  - facility: IA Public Health Lab\n",
            )
        )
    handler = InboundHandler(service, load_profiles(mappings_copy), load_sites(mappings_copy))
    outcomes: dict[str, str] = {}
    with RunningListener(handler.handle) as running:
        for index, path in enumerate(FILES):
            # The samples reuse control ids across files; make each one distinct.
            raw = path.read_bytes().replace(b"|MSG000", f"|C{index:02d}-MSG000".encode())
            with MllpClient("127.0.0.1", running.port, timeout=15, attempts=1) as client:
                outcomes[path.name] = _check(client.send(raw))
    if claimed:
        assert outcomes["ADT-A04-01.hl7"] == "AA"
        assert outcomes["ORM-O01-01.hl7"] == "AE"  # a lab order, not a cell therapy
    else:
        assert set(outcomes.values()) <= {"AR", "CR"}
    assert outcomes["VXU-V04-01.hl7"] == "AR"
