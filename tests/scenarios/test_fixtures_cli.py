"""``v2v fixtures list|show|replay`` — replay aimed at a real ``v2v serve`` process, the way a
hospital tester aims it at their own engine."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from fixtures.sandbox import Sandbox
from fixtures.simulators.manufacturer_portal import ManufacturerPortal, new_secret
from gateway.cli.main import app
from gateway.embedded import free_port

runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``v2v serve`` in a subprocess, Helix Bio's portal simulator beside it."""
    secret = new_secret()
    folder = tmp_path_factory.mktemp("served")
    http_port, mllp_port = free_port(), free_port()
    with ManufacturerPortal("helix-bio", secret) as portal:
        env = {
            **os.environ,
            "V2V_DATABASE_URL": f"sqlite:///{folder / 'served.db'}",
            "V2V_WEBHOOK_SECRET_HELIX_BIO": secret,
            "V2V_HELIX_BIO_URL": portal.url + "/api/v2",
        }
        env.pop("V2V_AUTH_FILE", None)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli.main",
                "serve",
                "--port",
                str(http_port),
                "--mllp-port",
                str(mllp_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                pytest.fail("v2v serve did not become ready")
            yield url, f"127.0.0.1:{mllp_port}", secret
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_list_and_show() -> None:
    listed = runner.invoke(app, ["fixtures", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert "hl7v2/journey/st-mary-orm-o01-new-order" in listed.output
    shown = runner.invoke(app, ["fixtures", "show", "hl7v2/st-mary-orm-o01-new-order"])
    assert shown.exit_code == 0 and "ORM^O01" in shown.output and "expected" in shown.output
    scenario = runner.invoke(app, ["fixtures", "show", "cancel-after-cutoff"])
    assert scenario.exit_code == 0 and "cancellation_cutoff_passed" in scenario.output
    missing = runner.invoke(app, ["fixtures", "show", "no-such-fixture"])
    assert missing.exit_code == 1


def test_replay_a_scenario_against_a_served_gateway_passes(
    served: tuple[str, str, str],
) -> None:
    url, mllp, secret = served
    result = runner.invoke(
        app,
        [
            "fixtures",
            "replay",
            "cancel-before-cutoff",
            "hl7v2/st-mary-orm-o01-unknown-product",
            "--url",
            url,
            "--mllp",
            mllp,
            "--secret",
            f"helix-bio={secret}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "8 passed, 0 failed" in result.output


def test_an_inbound_ack_replayed_alone_passes_on_silence(served: tuple[str, str, str]) -> None:
    url, mllp, _secret = served
    result = runner.invoke(
        app, ["fixtures", "replay", "hl7v2/inbound-ack", "--url", url, "--mllp", mllp]
    )
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output


def test_replay_reports_a_mismatch_and_exits_non_zero(served: tuple[str, str, str]) -> None:
    url, mllp, _secret = served
    # a wrong secret: the gateway answers 401 where the fixture expects 200
    result = runner.invoke(
        app,
        [
            "fixtures",
            "replay",
            "cancel-after-cutoff",
            "--url",
            url,
            "--mllp",
            mllp,
            "--secret",
            f"helix-bio={new_secret()}",
        ],
    )
    assert result.exit_code == 1
    assert "FAIL" in result.output and "401" in result.output


def test_replay_needs_a_known_fixture(served: tuple[str, str, str]) -> None:
    url, mllp, _ = served
    result = runner.invoke(app, ["fixtures", "replay", "nope", "--url", url, "--mllp", mllp])
    assert result.exit_code == 2


def test_the_sandbox_prints_its_exports_whole_for_pasting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fixtures.sandbox
    from fixtures.sandbox import SECRET_VARIABLES

    secrets = {partner: new_secret() + "x" * 60 for partner in SECRET_VARIABLES}
    world = SimpleNamespace(
        mllp=("127.0.0.1", 2575),
        url="http://127.0.0.1:8080",
        ehr={"st-mary": SimpleNamespace(endpoint="127.0.0.1:2576")},
        fhir=SimpleNamespace(base_url="http://127.0.0.1:8081/fhir"),
        portals={"helix-bio": SimpleNamespace(url="http://127.0.0.1:8101")},
        couriers={"polar-express": SimpleNamespace(url="http://127.0.0.1:8102")},
        erp=SimpleNamespace(address="http://127.0.0.1:8103/soap/purchasing"),
        secrets=secrets,
    )

    @contextlib.contextmanager
    def started(_database: Path) -> Iterator[SimpleNamespace]:
        yield world

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fixtures.sandbox.Sandbox, "start", started)
    monkeypatch.setattr("gateway.cli.fixtures.time.sleep", interrupted)
    # An 80-column terminal, whatever runs the tests: rich sizes itself, not through click.
    monkeypatch.setattr("gateway.cli.fixtures.console", Console(width=80))
    result = runner.invoke(app, ["fixtures", "sandbox"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for partner, variable in SECRET_VARIABLES.items():
        assert f"export {variable}={secrets[partner]}" in lines
    assert "partner  helix-bio       http://127.0.0.1:8101" in lines
    assert "partner  polar-express   http://127.0.0.1:8102" in lines
    assert "ERP SOAP http://127.0.0.1:8103/soap/purchasing" in lines
    replay = [line for line in lines if line.startswith("replay:")]
    assert replay == [
        "replay:  v2v fixtures replay all --url http://127.0.0.1:8080 --mllp 127.0.0.1:2575 "
        "(with the exports above)"
    ]


def test_the_sandbox_never_deletes_a_database_that_is_not_its_own(tmp_path: Path) -> None:
    from fixtures.sandbox import SandboxRefused, is_sandbox_database
    from gateway.store.database import make_engine
    from gateway.store.migrate import upgrade

    gateways = tmp_path / "gateway.db"
    engine = make_engine(f"sqlite:///{gateways}")
    upgrade(engine)
    engine.dispose()
    before = gateways.read_bytes()
    result = runner.invoke(app, ["fixtures", "sandbox", "--database", str(gateways)])
    assert result.exit_code == 2
    assert "is not a sandbox's database" in " ".join(result.output.split())
    assert gateways.read_bytes() == before
    with pytest.raises(SandboxRefused), Sandbox.start(gateways):
        pass
    # The sandbox's own file is marked, so starting a sandbox on it again is allowed.
    own = tmp_path / "sandbox.db"
    with Sandbox.start(own):
        pass
    assert is_sandbox_database(own)
    with Sandbox.start(own):
        pass


def test_sandbox_is_documented() -> None:
    result = runner.invoke(app, ["fixtures", "--help"])
    assert result.exit_code == 0
    for command in ("list", "show", "replay", "sandbox"):
        assert command in result.output
    assert Path(__file__).name  # the module runs against a subprocess gateway above
