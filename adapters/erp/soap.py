"""The hospital ERP's purchasing service over SOAP 1.1, through zeep.

A SOAP fault is a :class:`DeliveryError`: a client fault (we sent something the ERP
refuses) is permanent, a server fault or a network failure is retried by the relay. A
reply refused as unsafe XML (a DTD, entity declarations: an entity-expansion "bomb") is
permanent too: asking again brings the same reply, and only a person can tell whether
the ERP acted on the request.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import requests
import zeep
from zeep.exceptions import (
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    Fault,
    TransportError,
    ValidationError,
)
from zeep.exceptions import Error as ZeepError
from zeep.transports import Transport as ZeepTransport

from adapters.erp.mapping import BINDING, ErpMapping
from gateway.service.relay import DeliveryError

__all__ = ["BINDING", "PurchaseOrderStatus", "PurchasingService", "is_client_fault"]


@dataclass(frozen=True)
class PurchaseOrderStatus:
    number: str
    status: str
    reference: str


@functools.lru_cache(maxsize=16)
def _client(wsdl: str, timeout: float) -> zeep.Client:
    session = requests.Session()
    session.trust_env = False  # a site proxy setting must not reroute calls to the ERP
    transport = ZeepTransport(session=session, operation_timeout=timeout)  # type: ignore[no-untyped-call]
    return zeep.Client(wsdl, transport=transport)  # type: ignore[no-untyped-call]


def is_client_fault(fault: Fault) -> bool:
    code = (fault.code or "").split(":")[-1]
    return code.startswith("Client") or code.startswith("Sender")


class PurchasingService:
    """One site's purchasing service; ``address`` overrides the mapping's endpoint."""

    def __init__(self, mapping: ErpMapping, address: str | None = None) -> None:
        self.mapping = mapping
        self.address = address or mapping.endpoint.base_url()
        self.client = _client(mapping.wsdl_location(), mapping.timeout_seconds)
        self.service = self.client.create_service(BINDING, self.address)  # type: ignore[no-untyped-call]

    def _call(self, operation: str, **arguments: Any) -> Any:
        try:
            # SOAP 1.1 section 3: a SOAP message must not contain a DTD. Set for the reply
            # only (per thread), so loading the site's WSDL is unchanged.
            with self.client.settings(forbid_dtd=True, forbid_entities=True):
                return getattr(self.service, operation)(**arguments)
        except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as exc:
            raise DeliveryError(
                f"ERP {self.mapping.site} {operation}: the reply was refused as unsafe XML "
                f"({str(exc)[:200]}); SOAP allows no DTD or entities, so "
                "asking again would bring the same reply. The ERP may have acted on the "
                "request: check it there before retrying (a retry reuses the request id).",
                permanent=True,
            ) from exc
        except Fault as fault:
            raise DeliveryError(
                f"ERP {self.mapping.site} {operation} fault {fault.code}: {fault.message}",
                permanent=is_client_fault(fault),
            ) from fault
        except TransportError as exc:
            raise DeliveryError(
                f"ERP {self.mapping.site} {operation}: HTTP {exc.status_code}",
                permanent=400 <= exc.status_code < 500 and exc.status_code not in (408, 429),
            ) from exc
        except (requests.RequestException, OSError) as exc:
            raise DeliveryError(f"ERP {self.mapping.site} unreachable: {exc}") from exc
        except (ValidationError, TypeError) as exc:
            # zeep builds the request before sending it: one it cannot build (a required
            # element missing, an argument the site's WSDL does not have) never left, and
            # would be refused the same way on every retry.
            raise DeliveryError(
                f"ERP {self.mapping.site} {operation}: the request could not be built from "
                f"the site's WSDL ({str(exc)[:300]}); nothing was sent. Fix the ERP mapping or "
                "WSDL, then retry the message.",
                permanent=True,
            ) from exc
        except ZeepError as exc:
            raise DeliveryError(f"ERP {self.mapping.site} {operation}: {exc}") from exc
        except (IndexError, AttributeError, ValueError) as exc:
            # zeep raises these on a reply it cannot read (an empty SOAP Body, say).
            raise DeliveryError(
                f"ERP {self.mapping.site} {operation}: unreadable answer ({exc})"
            ) from exc

    def create_purchase_order(
        self, *, request_id: str, vendor: str, material: str, delivery: date, reference: str
    ) -> str:
        answer = self._call(
            "CreatePurchaseOrder",
            RequestId=request_id,
            Plant=self.mapping.plant,
            VendorId=vendor,
            Material=material,
            Quantity=1,
            DeliveryDate=delivery,
            CostCenter=self.mapping.cost_center,
            Reference=reference,
        )
        return self._number(answer, "PurchaseOrderNumber", "CreatePurchaseOrder")

    def _number(self, answer: Any, name: str, operation: str) -> str:
        """A document number from a successful answer. An answer without one is not a
        success to record: storing "None" would send every later call against it."""
        value = getattr(answer, name, None)
        text = str(value).strip() if value is not None else ""
        if not text:
            raise DeliveryError(
                f"ERP {self.mapping.site} {operation} answered without a {name}; "
                "nothing was recorded, and the call is retried"
            )
        return text

    def post_goods_receipt(
        self, *, request_id: str, purchase_order: str, received_at: datetime, batches: list[str]
    ) -> str:
        answer = self._call(
            "PostGoodsReceipt",
            RequestId=request_id,
            PurchaseOrderNumber=purchase_order,
            ReceivedAt=received_at,
            Quantity=1,
            Batch=batches,
        )
        return self._number(answer, "DocumentNumber", "PostGoodsReceipt")

    def status(self, purchase_order: str) -> PurchaseOrderStatus:
        answer = self._call("GetPurchaseOrderStatus", PurchaseOrderNumber=purchase_order)
        return PurchaseOrderStatus(
            str(answer.PurchaseOrderNumber), str(answer.Status), str(answer.Reference)
        )
