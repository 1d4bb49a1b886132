"""Python tools of the refunds example."""

from __future__ import annotations

ORDERS: dict[int, tuple[str, float]] = {
    1002: ("delivered", 320.00),
    1003: ("returned", 1899.00),
    1042: ("in transit", 59.90),
}
"""Order id: its status and what the customer paid (USD)."""


def _order(order_id: int) -> tuple[str, float]:
    if order_id not in ORDERS:
        raise ValueError(f"no order {order_id}")
    return ORDERS[order_id]


def lookup_order(order_id: int) -> dict[str, object]:
    """Look an order up: its status and what the customer paid.

    Args:
        order_id: The numeric order id, e.g. 1003.
    """
    status, paid = _order(order_id)
    return {"order_id": order_id, "status": status, "paid": paid}


def issue_refund(order_id: int, amount: float) -> dict[str, object]:
    """Refund part or all of an order to the customer's original payment method.

    Args:
        order_id: The numeric order id.
        amount: How much to refund, in USD.
    """
    _, paid = _order(order_id)
    if amount > paid:
        raise ValueError(f"order {order_id} was paid {paid:.2f}; cannot refund {amount:.2f}")
    return {"order_id": order_id, "refunded": round(amount, 2), "refund_id": f"R-{order_id}"}
