"""Hospital ERP purchasing over SOAP 1.1 (zeep): purchase orders and goods receipts."""

from adapters.erp.mapping import ErpMapping, load_erp
from adapters.erp.outbound import purchase_order_status, transport
from adapters.erp.soap import PurchaseOrderStatus, PurchasingService

__all__ = [
    "ErpMapping",
    "PurchaseOrderStatus",
    "PurchasingService",
    "load_erp",
    "purchase_order_status",
    "transport",
]
