from promptflow.core import tool

URGENT_WORDS = ("urgent", "asap", "immediately", "right now")


@tool
def is_urgent(request: str) -> bool:
    """True when the request sounds urgent; returns a real boolean for `activate: is: true`."""
    text = (request or "").lower()
    return any(word in text for word in URGENT_WORDS) or "!!" in text
