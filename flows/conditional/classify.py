import re

from promptflow.core import tool

# Checked in order: a request about a refund for an order is a refund.
ROUTES = (
    ("refund", ("refund", "money back", "reimburse", "return")),
    ("order", ("order", "delivery", "shipping", "shipped", "tracking", "parcel")),
)


@tool
def classify(request: str) -> str:
    """Route a request to "refund", "order" or "other" by keywords (deterministic, no model)."""
    text = " ".join(re.findall(r"[a-z]+", str(request or "").lower()))
    for route, keywords in ROUTES:
        if any(re.search(r"\b" + re.escape(k), text) for k in keywords):
            return route
    return "other"
