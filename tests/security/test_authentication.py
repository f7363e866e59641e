"""Every partner and user authenticates; tokens are short-lived and scoped."""

from __future__ import annotations

import time

import jwt

from tests.security.conftest import SECRETS, Secured, _lakeside_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_credential_is_401_with_a_challenge(secured: Secured) -> None:
    response = secured.client.get("/orders")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert secured.client.get("/healthz").status_code == 200  # probes stay open


def test_client_secret_grant_and_failures(secured: Secured) -> None:
    token = secured.token("st-mary-ehr", SECRETS["V2V_SECRET_ST_MARY_EHR"])
    assert secured.client.get("/orders", headers=bearer(token)).status_code == 200
    wrong = secured.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "st-mary-ehr",
            "client_secret": "no",
        },
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unknown_grant = secured.client.post("/auth/token", data={"grant_type": "password"})
    assert unknown_grant.status_code == 400
    assert unknown_grant.json()["error"] == "unsupported_grant_type"
    basic = secured.client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=("helix-portal", SECRETS["V2V_SECRET_HELIX"]),
    )
    assert basic.status_code == 200 and basic.json()["expires_in"] == 120


def test_private_key_jwt_is_single_use_and_audience_bound(secured: Secured) -> None:
    assertion = secured.assertion(jti="once-only")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    assert secured.client.post("/auth/token", data=form).status_code == 200
    replay = secured.client.post("/auth/token", data=form)
    assert replay.status_code == 401 and "replay" in replay.json()["error_description"]
    form["client_assertion"] = secured.assertion(audience="https://elsewhere/token")
    assert secured.client.post("/auth/token", data=form).status_code == 401
    form["client_assertion"] = secured.assertion(lifetime=3600)
    assert secured.client.post("/auth/token", data=form).status_code == 401


def test_tampered_and_expired_tokens_are_refused(secured: Secured) -> None:
    token = _lakeside_token(secured)
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "tenant": "st-mary"},
        "not-the-key-" + "y" * 40,
        algorithm="HS256",
    )
    assert secured.client.get("/orders", headers=bearer(forged)).status_code == 401
    expired = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "exp": int(time.time()) - 5},
        SECRETS["V2V_TOKEN_KEY"],
        algorithm="HS256",
    )
    response = secured.client.get("/orders", headers=bearer(expired))
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_scopes_limit_what_a_token_may_do(secured: Secured) -> None:
    over = secured.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "st-mary-readonly",
            "client_secret": SECRETS["V2V_SECRET_READONLY"],
            "scope": "system/Order.cruds",
        },
    )
    assert over.status_code == 400 and over.json()["error"] == "invalid_scope"
    token = secured.token("st-mary-readonly", SECRETS["V2V_SECRET_READONLY"])
    order_id = secured.orders["st-mary"]
    assert secured.client.get(f"/orders/{order_id}", headers=bearer(token)).status_code == 200
    write = secured.client.post(
        f"/orders/{order_id}/events", headers=bearer(token), json={"type": "receive_at_mfg"}
    )
    assert write.status_code == 403 and write.json()["required_scope"] == "system/Order.u"


def test_api_key_for_partners_that_cannot_do_oauth(secured: Secured) -> None:
    good = secured.client.get("/orders", headers={"X-API-Key": SECRETS["V2V_APIKEY_NORTHWIND"]})
    assert good.status_code == 200
    assert [o["id"] for o in good.json()["items"]] == [secured.orders["lakeside"]]
    bad = secured.client.get("/orders", headers={"X-API-Key": "guess"})
    assert bad.status_code == 401


def test_staff_login_puts_the_signed_in_name_in_the_custody_log(secured: Secured) -> None:
    anonymous = secured.client.post(
        "/scans", json={"checkpoint": "receipt", "unit_scan": "=A99912600000100"}
    )
    assert anonymous.status_code == 401
    failed = secured.client.post("/auth/login", data={"username": "pharm.ng", "password": "wrong"})
    assert failed.status_code == 401
    login = secured.client.post(
        "/auth/login", data={"username": "pharm.ng", "password": "correct horse battery staple"}
    )
    assert login.status_code == 200 and "v2v_session" in login.cookies
    # the body claims another name; the custody log records the signed-in user
    response = secured.client.post(
        "/scans",
        json={
            "checkpoint": "receipt",
            "user": "someone.else",
            "unit_scan": "garbage",
            "order_id": secured.orders["st-mary"],
        },
    )
    assert response.status_code == 200 and response.json()["user"] == "pharm.ng"
    order = secured.service.get(secured.orders["st-mary"])
    assert order.custody_events[-1].who.person == "pharm.ng"
    secured.client.post("/auth/logout")
    secured.client.cookies.clear()
    assert secured.client.get("/auth/me").status_code == 401


def test_token_endpoint_answers_in_oauth_form(secured: Secured) -> None:
    missing = secured.client.post("/auth/token", data={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert missing.headers["cache-control"] == "no-store"


def test_a_used_assertion_is_refused_by_every_worker_process(secured: Secured) -> None:
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app

    # A second worker: its own app and memory, the same database.
    other_worker = create_app(secured.service, auth=secured.client.app.state.auth)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": secured.assertion(jti="captured-once"),
    }
    assert secured.client.post("/auth/token", data=form).status_code == 200
    with TestClient(other_worker) as other:
        replayed = other.post("/auth/token", data=form)
    assert replayed.status_code == 401 and "replay" in replayed.json()["error_description"]


def test_with_a_token_url_the_audience_no_longer_follows_the_host_header(
    secured: Secured,
) -> None:
    auth = secured.client.app.state.auth
    secured.client.app.state.auth = auth.model_copy(
        update={"token_url": "https://gateway.example/auth/token"}
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    forged = secured.assertion(audience="http://evil.example/auth/token")
    refused = secured.client.post(
        "/auth/token",
        data={**form, "client_assertion": forged},
        headers={"Host": "evil.example"},
    )
    assert refused.status_code == 401
    meant = secured.assertion(audience="https://gateway.example/auth/token")
    assert (
        secured.client.post("/auth/token", data={**form, "client_assertion": meant}).status_code
        == 200
    )


def test_a_removed_client_is_refused_at_once_though_its_token_has_not_expired(
    secured: Secured,
) -> None:
    token = secured.token("helix-portal", SECRETS["V2V_SECRET_HELIX"])
    assert secured.client.get("/orders", headers=bearer(token)).status_code == 200
    auth = secured.client.app.state.auth
    secured.client.app.state.auth = auth.model_copy(
        update={"clients": [c for c in auth.clients if c.id != "helix-portal"]}
    )
    refused = secured.client.get("/orders", headers=bearer(token))
    assert refused.status_code == 401 and "no longer" in refused.json()["detail"]


def test_scope_words_and_letters_mean_only_what_smart_says() -> None:
    from gateway.api.auth import Principal

    def allows(scope: str, action: str) -> bool:
        principal = Principal("c", "hospital", "st-mary", frozenset({scope}))
        return principal.allows("Order", action)

    assert allows("system/Order.read", "r") and allows("system/Order.read", "s")
    assert not allows("system/Order.read", "u")
    # "write" holds the letters r and e, but it is SMART v1's create/update/delete.
    assert allows("system/Order.write", "u") and not allows("system/Order.write", "r")
    assert allows("system/Order.rs", "s") and not allows("system/Order.rs", "c")
    assert not allows("system/Order.rsx", "r")  # not a permission string: grants nothing
    assert allows("system/*.*", "d") and not allows("system/Patient.cruds", "r")


def test_an_admin_person_stays_signed_in(secured: Secured) -> None:
    from gateway.auth.config import User
    from gateway.auth.passwords import hash_password

    auth = secured.client.app.state.auth
    admin = User(
        username="ops.kim", kind="admin", password_hash=hash_password("operations passphrase")
    )
    secured.client.app.state.auth = auth.model_copy(update={"users": [*auth.users, admin]})
    secured.client.post(
        "/auth/login", data={"username": "ops.kim", "password": "operations passphrase"}
    )
    me = secured.client.get("/auth/me")
    assert me.status_code == 200, me.text
