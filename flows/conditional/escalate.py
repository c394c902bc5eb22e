from promptflow.core import tool


@tool
def escalate(route: str) -> str:
    """Runs only for urgent requests (activated on the boolean output of is_urgent)."""
    return f"Escalated to a human agent on the {route} queue."
