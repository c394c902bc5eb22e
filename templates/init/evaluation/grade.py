import re

from promptflow.core import tool


def _normalize(text: str) -> str:
    """Lower-case, drop punctuation and collapse whitespace."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text or "").lower()).split())


@tool
def grade(groundtruth: str, prediction: str, judgement: str = "") -> dict:
    """Grade one line: exact match after normalisation, plus the judge's 1-5 score.

    The score is None when the judge's reply holds no digit from 1 to 5 (for example when
    the flow ran with --offline and no model wrote the reply).
    """
    match = re.search(r"[1-5]", str(judgement or ""))
    return {
        "exact_match": _normalize(groundtruth) == _normalize(prediction),
        "score": int(match.group(0)) if match else None,
    }
