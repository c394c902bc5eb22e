import re

from promptflow.core import tool

SCORE = re.compile(r"\s*(?:score\s*[:=]?\s*)?([1-5])(?:\s*/\s*5)?[.\s]*", re.IGNORECASE)


def _normalize(text: str) -> str:
    """Lower-case, drop punctuation and collapse whitespace."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text or "").lower()).split())


@tool
def grade(groundtruth: str, prediction: str, judgement: str = "") -> dict:
    """Grade one line: exact match after normalisation, plus the judge's 1-5 score.

    The score is None when the judge's reply is not just a score from 1 to 5 ("4", "Score: 4"
    and "4/5" are scores): for example with --offline, where no model wrote the reply.
    """
    match = SCORE.fullmatch(str(judgement or ""))
    return {
        "exact_match": _normalize(groundtruth) == _normalize(prediction),
        "score": int(match.group(1)) if match else None,
    }
