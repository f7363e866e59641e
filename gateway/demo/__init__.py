"""``v2v demo``: one autologous CAR-T order from the EHR's order to the bedside infusion.

The demo starts the whole sandbox on a fresh SQLite file (the gateway's HTTP API, MLLP
listener and outbox relay; a simulated EHR, FHIR server, manufacturer portal, courier and
ERP) and replays the ``happy-path`` scenario of the fixture library through the gateway's
real endpoints. Time is simulated, so the weeks-long journey reads like a real one.
"""

from __future__ import annotations

from gateway.demo.run import run_demo

__all__ = ["run_demo"]
