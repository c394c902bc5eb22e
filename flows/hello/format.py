from promptflow.core import tool


@tool
def format_answer(answer: str) -> str:
    """Return the model's answer without surrounding whitespace."""
    return (answer or "").strip()
