"""MLLP over TLS: the listener, the client, and settings that cannot be used."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.ack import build_ack
from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from adapters.hl7v2.mapping import check
from adapters.hl7v2.mllp import MllpClient, MllpError
from adapters.hl7v2.outbound import transport
from adapters.hl7v2.tls import (
    CERT,
    CLIENT_CA,
    KEY,
    MllpSettingsError,
    client_context,
    server_context,
)
from gateway.mapping_files import MappingFileError
from gateway.service.notifications import partner_view
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError
from gateway.sites import Outbound, OutboundTls, SiteDirectory
from gateway.store.outbox import OutboxItem
from tests.hl7v2.conftest import RunningListener, fixture_bytes
from tests.hl7v2.tls_certs import Pki, make_pki

ADT = fixture_bytes("st-mary-adt-a04.hl7")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def _listening(handler: InboundHandler, env: dict[str, str]) -> RunningListener:
    return RunningListener(handler.handle, tls=server_context(env))


@pytest.fixture
def tls_listener(handler: InboundHandler, pki: Pki) -> Iterator[RunningListener]:
    env = {CERT: str(pki.server.cert), KEY: str(pki.server.key)}
    with _listening(handler, env) as running:
        yield running


def test_a_message_over_tls_is_acknowledged(tls_listener: RunningListener, pki: Pki) -> None:
    tls = client_context(str(pki.ca))
    with MllpClient("127.0.0.1", tls_listener.port, tls=tls, attempts=1) as client:
        reply = client.send(ADT)
    assert parse(reply).get("MSA-1") == "AA"


def test_plain_mllp_to_a_tls_listener_gets_no_ack(tls_listener: RunningListener) -> None:
    with (
        MllpClient("127.0.0.1", tls_listener.port, attempts=1, timeout=2) as client,
        pytest.raises(MllpError),
    ):
        client.send(ADT)


def test_a_listener_that_asks_for_client_certificates_refuses_a_client_without_one(
    handler: InboundHandler, pki: Pki
) -> None:
    env = {CERT: str(pki.server.cert), KEY: str(pki.server.key), CLIENT_CA: str(pki.ca)}
    with _listening(handler, env) as running:
        anonymous = client_context(str(pki.ca))
        with (
            MllpClient("127.0.0.1", running.port, tls=anonymous, attempts=1, timeout=2) as client,
            pytest.raises(MllpError),
        ):
            client.send(ADT)
        known = client_context(str(pki.ca), str(pki.client.cert), str(pki.client.key))
        with MllpClient("127.0.0.1", running.port, tls=known, attempts=1) as client:
            assert parse(client.send(ADT)).get("MSA-1") == "AA"


def test_settings_that_cannot_be_used_are_named(pki: Pki, tmp_path: Path) -> None:
    assert server_context({}) is None
    with pytest.raises(MllpSettingsError, match=f"{CERT} and {KEY} go together"):
        server_context({CERT: str(pki.server.cert)})
    missing = str(tmp_path / "nowhere.key")
    with pytest.raises(MllpSettingsError, match=r"nowhere\.key"):
        server_context({CERT: str(pki.server.cert), KEY: missing})
    with pytest.raises(MllpSettingsError, match=CLIENT_CA):
        server_context({CERT: str(pki.server.cert), KEY: str(pki.server.key), CLIENT_CA: missing})


def _tls_site(sites: SiteDirectory, port: int, tls: OutboundTls) -> SiteDirectory:
    site = sites.sites["st-mary"]
    outbound = Outbound(
        protocol="hl7v2", profile=site.outbound.profile, endpoint=f"127.0.0.1:{port}", tls=tls
    )
    moved = site.model_copy(update={"outbound": outbound})
    return dataclasses.replace(sites, sites={**sites.sites, "st-mary": moved})


def test_status_messages_reach_an_ehr_that_listens_with_tls_and_a_client_certificate(
    pki: Pki, sites: SiteDirectory, service: OrderService, new_order: Any
) -> None:
    received: list[bytes] = []

    def ehr(raw: bytes, peer: str) -> list[bytes]:
        received.append(raw)
        return [build_ack(parse(raw), "AA")]

    env = {CERT: str(pki.server.cert), KEY: str(pki.server.key), CLIENT_CA: str(pki.ca)}
    order = new_order()
    notice = {**partner_view(order), "event": "enroll", "outcome": "applied"}
    item = OutboxItem(1, "hospital:st-mary", "order.status", order.id, "k", notice, 0, "", None)
    with RunningListener(ehr, tls=server_context(env)) as running:
        signed = OutboundTls(ca=str(pki.ca), cert=str(pki.client.cert), key=str(pki.client.key))
        transport(_tls_site(sites, running.port, signed), service, backoff=0.01)(item)
        assert len(received) == 1 and parse(received[0]).get("PID-3.1") == "MRN-SYN-0001"
        # Without the client certificate the EHR hangs up: retried, never delivered in clear.
        unsigned = OutboundTls(ca=str(pki.ca))
        with pytest.raises(DeliveryError) as caught:
            transport(_tls_site(sites, running.port, unsigned), service, backoff=0.01)(item)
        assert not caught.value.permanent and len(received) == 1


def test_a_site_whose_tls_files_cannot_be_used_is_refused_by_the_check(
    mappings_copy: Path,
) -> None:
    path = mappings_copy / "sites" / "st-mary.yaml"
    text = path.read_text()
    assert "outbound:" in text
    path.write_text(text.replace("outbound:\n", "outbound:\n  tls: {ca: /nowhere/ca.pem}\n", 1))
    with pytest.raises(MappingFileError) as caught:
        check(mappings_copy)
    assert caught.value.path == path and caught.value.line is not None
    assert "/nowhere/ca.pem" in caught.value.reason


def test_the_ehr_simulator_sends_over_tls(tls_listener: RunningListener, pki: Pki) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "fixtures.simulators.ehr_mllp"]
    target = f"127.0.0.1:{tls_listener.port}"
    fixture = str(Path(__file__).resolve().parents[2] / "fixtures/hl7v2/st-mary-adt-a04.hl7")
    done = subprocess.run(
        [*command, "--send", target, "--tls-ca", str(pki.ca), fixture],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "MSA|AA|SM-0018" in done.stdout
    unusable = subprocess.run(
        [*command, "--send", target, "--tls-ca", "/nowhere/ca.pem", fixture],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unusable.returncode == 1 and "/nowhere/ca.pem" in unusable.stderr
    assert "Traceback" not in unusable.stderr


def test_a_client_refuses_a_receiver_its_authority_did_not_sign(
    tls_listener: RunningListener, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    stranger = make_pki(tmp_path / "other")
    with (
        MllpClient(
            "127.0.0.1", tls_listener.port, tls=client_context(str(stranger.ca)), attempts=1
        ) as client,
        pytest.raises(MllpError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.send(ADT)


def test_a_client_refuses_a_receiver_whose_certificate_names_another_host(
    handler: InboundHandler, tmp_path: Path
) -> None:
    elsewhere = make_pki(tmp_path, server_names=("ehr.example.invalid",))
    env = {CERT: str(elsewhere.server.cert), KEY: str(elsewhere.server.key)}
    with (
        _listening(handler, env) as running,
        MllpClient("127.0.0.1", running.port, tls=client_context(str(elsewhere.ca))) as client,
        pytest.raises(MllpError, match=r"CERTIFICATE_VERIFY_FAILED|match"),
    ):
        client.attempts = 1
        client.send(ADT)


def test_both_sides_refuse_anything_older_than_tls_1_2(pki: Pki) -> None:
    import ssl

    server = server_context({CERT: str(pki.server.cert), KEY: str(pki.server.key)})
    assert server is not None and server.minimum_version is ssl.TLSVersion.TLSv1_2
    for client in (client_context(), client_context(str(pki.ca))):
        assert client.minimum_version is ssl.TLSVersion.TLSv1_2
        assert client.check_hostname and client.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_a_listener_setting_that_is_no_usable_number_is_named(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.hl7v2.listener import ListenerConfig

    monkeypatch.setenv("V2V_MLLP_IDLE_SECONDS", value)
    with pytest.raises(MllpSettingsError, match="V2V_MLLP_IDLE_SECONDS"):
        ListenerConfig.from_env("127.0.0.1", 0)
