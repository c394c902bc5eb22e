from promptflow.core import tool


@tool
def format_answer(text: str) -> str:
    """Tidy the model's reply: trim it and collapse runs of blank lines."""
    lines = [line.rstrip() for line in (text or "").strip().splitlines()]
    tidy = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy)
