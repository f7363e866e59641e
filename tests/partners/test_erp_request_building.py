"""An ERP request zeep cannot build from the site's WSDL was never sent, and never will be."""

from __future__ import annotations

import pytest

from adapters.erp.mapping import load_erp
from adapters.erp.soap import PurchasingService
from gateway.service.relay import DeliveryError


@pytest.mark.parametrize(
    "arguments",
    [{"RequestId": "r-1", "Plant": "P1"}, {"Bogus": 1}],
    ids=["required-element-missing", "argument-the-wsdl-lacks"],
)
def test_a_request_that_cannot_be_built_is_a_permanent_failure(
    arguments: dict[str, object],
) -> None:
    mapping = next(iter(load_erp().values()))
    # Nothing listens here: a request that were sent would fail as unreachable (retried).
    service = PurchasingService(mapping, address="http://127.0.0.1:9/purchasing")
    with pytest.raises(DeliveryError) as caught:
        service._call("CreatePurchaseOrder", **arguments)
    assert caught.value.permanent
    assert "could not be built" in str(caught.value) and "nothing was sent" in str(caught.value)
