import re

from promptflow.core import tool


@tool
def order_status(request: str) -> str:
    """Look up an order (a stand-in for a real order service)."""
    match = re.search(r"\d{3,}", request or "")
    if match:
        return f"Order {match.group(0)} has shipped and should arrive within 3 working days."
    return "Please tell me your order number so I can look it up."
