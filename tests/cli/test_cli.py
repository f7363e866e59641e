"""The `v2v` command: every command has --help, and the operational ones work."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.embedded import free_port
from gateway.mapping_files import mappings_dir
from tests.cli.support import enrolled_order_with_pending_notice

runner = CliRunner()
COMMANDS = [
    [],
    ["serve"],
    ["auth"],
    ["auth", "hash-password"],
    ["outbox"],
    ["outbox", "list"],
    ["outbox", "retry"],
    ["outbox", "dead-letter"],
    ["audit", "checkpoint"],
    ["audit", "keygen"],
    ["scan"],
    ["label"],
    ["db"],
    ["db", "upgrade"],
    ["orders"],
    ["orders", "list"],
    ["orders", "show"],
    ["audit"],
    ["audit", "verify"],
    ["mappings"],
    ["mappings", "check"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "v2v")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_serve_names_its_options() -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    for option in ("--host", "--port", "--mllp-port"):
        assert option in result.output


def _lakeside_order(service: Any, placer: str) -> Any:
    from gateway.domain.model import Site
    from gateway.domain.patient import PatientIdentity
    from gateway.service.commands import CreateOrder
    from tests.conftest import SYNTHETIC_PATIENTS

    return service.create_order(
        CreateOrder(
            patient=PatientIdentity(**SYNTHETIC_PATIENTS[0]),
            therapy_code="sam-cel",
            site=Site(id="lakeside"),
            placer_number=placer,
        ),
        actor="cli-test",
    )


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    database = tmp_path / "cli.db"
    monkeypatch.setenv("V2V_DATABASE_URL", f"sqlite:///{database}")
    return database


def test_db_upgrade_orders_and_audit_verify(db_env: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    from gateway.store.migrate import head_revision

    assert result.exit_code == 0 and str(head_revision()) in result.output
    from gateway.bootstrap import build_service

    service = build_service()
    order = _lakeside_order(service, "PL-CLI-1")
    listed = runner.invoke(app, ["orders", "list", "--json"])
    assert listed.exit_code == 0 and order.id in listed.output
    shown = runner.invoke(app, ["orders", "show", "PL-CLI-1"])
    assert shown.exit_code == 0 and order.id in shown.output
    assert "MRN-SYN-0001" not in shown.output
    missing = runner.invoke(app, ["orders", "show", "nope"])
    assert missing.exit_code == 1
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0 and "intact" in verified.output
    service.engine.dispose()


def test_audit_verify_exits_1_on_tampering(db_env: Path) -> None:
    import sqlite3

    runner.invoke(app, ["db", "upgrade"])
    from gateway.bootstrap import build_service
    from gateway.domain.model import Site
    from gateway.domain.patient import PatientIdentity
    from gateway.service.commands import CreateOrder
    from tests.conftest import SYNTHETIC_PATIENTS

    service = build_service()
    for index in range(3):
        service.create_order(
            CreateOrder(
                patient=PatientIdentity(**SYNTHETIC_PATIENTS[0]),
                therapy_code="exa-cel",
                site=Site(id="st-mary"),
                placer_number=f"PL-T{index}",
            ),
            actor="cli-test",
        )
    service.engine.dispose()
    conn = sqlite3.connect(db_env)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    conn.commit()
    conn.close()
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "BROKEN at entry 2" in result.output


def test_mappings_check_reports_file_and_line(tmp_path: Path) -> None:
    import shutil

    from gateway.mapping_files import DEFAULT_MAPPINGS_DIR

    ok = runner.invoke(app, ["mappings", "check"])
    assert ok.exit_code == 0, ok.output
    broken = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, broken)
    rule = broken / "therapies" / "exa-cel.yaml"
    rule.write_text(
        rule.read_text().replace("thaw_to_infusion_minutes: 90", "thaw_to_infusion_minutes: soon")
    )
    result = runner.invoke(
        app, ["mappings", "check", "--folder", str(broken)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 1
    line = next(
        n
        for n, text in enumerate(rule.read_text().splitlines(), 1)
        if text.startswith("thaw_to_infusion_minutes")
    )
    assert f"exa-cel.yaml:{line}" in result.output
    assert "thaw_to_infusion_minutes" in result.output


def test_serve_migrates_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "V2V_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "serve",
            "--port",
            str(port),
            "--mllp-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        from gateway.store.migrate import head_revision

        assert ready.json()["schema"] == head_revision()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "stopped cleanly" in output


def _serve(tmp_path: Path, mllp_port: int, **env: str) -> subprocess.CompletedProcess[str]:
    """``v2v serve`` expected to stop by itself; a gateway that stays up fails the test."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "serve",
            "--port",
            str(free_port()),
            "--mllp-port",
            str(mllp_port),
        ],
        # Wide enough that rich does not wrap the long temporary paths in its messages.
        env={
            **os.environ,
            "COLUMNS": "500",
            "V2V_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_to_start_with_a_broken_hl7_profile(tmp_path: Path) -> None:
    # Not an HTTP API without its MLLP listener: the interface engine would be refused.
    mappings = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), mappings)
    profile = mappings / "hl7v2" / "st-mary.yaml"
    profile.write_text(profile.read_text(encoding="utf-8") + "\nbroken: [\n", encoding="utf-8")
    result = _serve(tmp_path, free_port(), V2V_MAPPINGS_DIR=str(mappings))
    assert result.returncode == 2, result.stderr
    assert "did not start" in result.stderr and "st-mary.yaml" in result.stderr


def test_serve_refuses_a_profile_that_maps_a_product_to_an_unknown_therapy(
    tmp_path: Path,
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), mappings)
    profile = mappings / "hl7v2" / "st-mary.yaml"
    text = profile.read_text(encoding="utf-8")
    profile.write_text(text.replace("CART-EXA: exa-cel", "CART-EXA: no-such-cel"), "utf-8")
    result = _serve(tmp_path, free_port(), V2V_MAPPINGS_DIR=str(mappings))
    assert result.returncode == 2, result.stderr
    assert "st-mary.yaml" in result.stderr and "no-such-cel" in result.stderr


def test_serve_stops_when_its_mllp_listener_cannot_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _serve(tmp_path, taken.getsockname()[1])
    assert result.returncode == 1, result.stderr
    assert "a background task failed" in result.stderr
    assert "address already in use" in result.stderr


def test_serve_refuses_to_start_with_a_broken_product_catalogue(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), mappings)
    catalogue = mappings / "products" / "site_products.yaml"
    catalogue.write_text(catalogue.read_text(encoding="utf-8") + "  - code: 12\n", "utf-8")
    result = _serve(tmp_path, free_port(), V2V_MAPPINGS_DIR=str(mappings))
    assert result.returncode == 2, result.stderr
    assert "did not start" in result.stderr and "site_products.yaml" in result.stderr


def test_labels_use_the_product_catalogue_of_the_configured_mappings_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.service.labels import LabelFactory
    from gateway.sites import load_sites

    mappings = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), mappings)
    catalogue = mappings / "products" / "site_products.yaml"
    added = '  - code: S9777\n    collection_type: "1"\n    description: "SITE-LOCAL: test"\n'
    catalogue.write_text(catalogue.read_text(encoding="utf-8") + added, "utf-8")
    monkeypatch.setenv("V2V_MAPPINGS_DIR", str(mappings))
    assert "S9777" in LabelFactory.default(load_sites()).catalog


def test_outbox_commands(db_env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    item = enrolled_order_with_pending_notice("PL-OB-1")
    listed = runner.invoke(app, ["outbox", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "hospital:st-mary" in listed.output
    dead = runner.invoke(app, ["outbox", "dead-letter", str(item), "--reason", "test"])
    assert dead.exit_code == 0
    assert runner.invoke(app, ["outbox", "dead-letter", str(item), "--reason", "x"]).exit_code == 1
    assert runner.invoke(app, ["outbox", "retry", str(item)]).exit_code == 0
    assert runner.invoke(app, ["outbox", "retry", "999999"]).exit_code == 1


def test_hash_password_round_trips() -> None:
    from gateway.auth.passwords import verify_password

    result = runner.invoke(app, ["auth", "hash-password", "--password", "twelve chars ok"])
    assert result.exit_code == 0
    assert verify_password("twelve chars ok", result.output.strip())
    assert not verify_password("wrong", result.output.strip())
    assert runner.invoke(app, ["auth", "hash-password", "--password", "short"]).exit_code == 2


def test_an_order_is_found_by_its_coi_typed_as_the_label_prints_it(db_env: Path) -> None:
    from gateway.bootstrap import build_service
    from gateway.domain.lifecycle import LifecycleEvent
    from gateway.domain.states import EventType
    from labeling.coi import CoiIdentifier

    service = build_service()
    order = _lakeside_order(service, "PL-CLI-2")
    service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="cli-test")
    coi = CoiIdentifier.from_value(str(service.get(order.id).coi))
    for typed in (coi.eye_readable, coi.value + coi.check_character):
        shown = runner.invoke(app, ["orders", "show", typed])
        assert shown.exit_code == 0 and order.id in shown.output, (typed, shown.output)
    wrong = "0" if coi.check_character != "0" else "1"
    mistyped = runner.invoke(app, ["orders", "show", coi.value + wrong])
    assert mistyped.exit_code == 1
    assert "check character" in mistyped.output and "No order" not in mistyped.output
    # A well-formed CoI of no order, typed without a check character, is simply not found.
    unknown = runner.invoke(app, ["orders", "show", "CHA999126ZZZZZZ"])
    assert unknown.exit_code == 1 and "No order" in unknown.output
    service.engine.dispose()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"V2V_MLLP_TLS_CERT": "/nowhere/server.pem"}, "V2V_MLLP_TLS_KEY"),
        (
            {"V2V_MLLP_TLS_CERT": "/nowhere/server.pem", "V2V_MLLP_TLS_KEY": "/nowhere/k.pem"},
            "/nowhere/server.pem",
        ),
        ({"V2V_MLLP_MAX_BYTES": "lots"}, "V2V_MLLP_MAX_BYTES='lots'"),
    ],
)
def test_serve_refuses_mllp_settings_it_cannot_use(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = _serve(tmp_path, free_port(), **env)
    assert result.returncode == 2, result.stderr
    assert "did not start" in result.stderr and named in result.stderr
    assert "Traceback" not in result.stderr
