"""With sign-in, a scan's custody entry names the signed-in person in their own role."""

from __future__ import annotations


def test_a_signed_in_persons_role_in_the_custody_log_is_their_own(
    secured,  # type: ignore[no-untyped-def]
) -> None:
    """With sign-in, the custody log takes the name from the session and now the role too: a
    request claiming another role ("nurse" for a pharmacist) used to be written as claimed."""
    client = secured.client
    login = client.post(
        "/auth/login", data={"username": "pharm.ng", "password": "correct horse battery staple"}
    )
    assert login.status_code == 200
    order_id = secured.orders["st-mary"]
    answer = client.post(
        "/scans",
        json={
            "checkpoint": "receipt",
            "unit_scan": "garbage",
            "order_id": order_id,
            "role": "nurse",
        },
    )
    assert answer.status_code == 200 and answer.json()["verdict"] == "red"
    photo = client.post(
        "/scans/image",
        data={"checkpoint": "receipt", "order_id": order_id, "role": "nurse"},
        files={"image": ("bag.png", b"not a picture", "image/png")},
    )
    assert photo.status_code == 200 and photo.json()["verdict"] == "red"
    events = secured.service.get(order_id).custody_events[-2:]
    assert [(e.who.person, e.who.role) for e in events] == [("pharm.ng", "pharmacist")] * 2
