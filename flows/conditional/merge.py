from promptflow.core import tool


@tool
def merge(order_status: str = None, refund_reply: str = None, other_reply: str = None) -> str:
    """Return the output of whichever branch ran (the others were bypassed)."""
    for reply in (order_status, refund_reply, other_reply):
        if reply:
            return str(reply).strip()
    return "Sorry, I could not handle this request."
