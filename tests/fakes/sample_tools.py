"""Sample function tools the tool tests share."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tether.tools import tool


class Address(BaseModel):
    city: str
    zip: str = ""


class Order(BaseModel):
    id: int
    items: list[str]


@tool
def search(query: str, limit: int = 5, exact: bool = False, tags: list[str] | None = None) -> str:
    """Search the catalogue.

    Matches titles and descriptions.

    Args:
        query: Words to look for.
        limit (int): Most results to return.
        exact: Match whole words only.

    Returns:
        Matching titles, one per line.
    """
    return f"{query}|{limit}|{exact}|{tags}"


@tool(name="refund_order", side_effects="write", scopes=["orders:write"], timeout_s=5)
def refund(order_id: int, amount: float) -> dict[str, Any]:
    """Refund an order."""
    return {"order_id": order_id, "amount": amount}


@tool
async def ship(address: Address, express: bool = False) -> Order:
    """Ship to an address."""
    return Order(id=7, items=[address.city, str(express)])
