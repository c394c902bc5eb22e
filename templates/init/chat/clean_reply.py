from promptflow.core import tool

PREFIXES = ("assistant:", "answer:")


@tool
def clean_reply(reply: str) -> str:
    """Trim the reply and drop a leading "Assistant:" or "Answer:" label some models add."""
    text = (reply or "").strip()
    lowered = text.lower()
    for prefix in PREFIXES:
        if lowered.startswith(prefix):
            return text[len(prefix):].strip()
    return text
