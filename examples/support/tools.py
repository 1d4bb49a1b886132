"""Python tools of the support example."""

from __future__ import annotations

ARTICLES = {
    "shipping": "Standard shipping takes 3-5 business days; express takes 1-2.",
    "returns": "Items can be returned within 30 days in original condition for a full refund.",
    "order number": "Order numbers are the digits on your receipt, e.g. 1042 (no letters).",
    "cancel": "Subscriptions can be cancelled from Account > Billing at any time.",
}


def kb_lookup(query: str) -> str:
    """Search the help-center knowledge base.

    Args:
        query: Keywords describing the customer's question.
    """
    q = query.lower()
    hits = [text for key, text in ARTICLES.items() if any(w in q for w in key.split())]
    return " ".join(hits) if hits else "No article matches that query."
