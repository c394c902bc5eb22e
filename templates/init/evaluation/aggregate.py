from typing import List

from promptflow.core import log_metric, tool


@tool
def aggregate(grades: List[dict]) -> dict:
    """Aggregate all lines: accuracy (share of exact matches) and the mean judge score."""
    total = len(grades)
    accuracy = round(sum(1 for g in grades if g["exact_match"]) / total, 4) if total else 0.0
    log_metric("accuracy", accuracy)

    scores = [g["score"] for g in grades if g.get("score") is not None]
    result = {"accuracy": accuracy, "lines": total}
    if scores:
        mean_score = round(sum(scores) / len(scores), 4)
        log_metric("mean_score", mean_score)
        result["mean_score"] = mean_score
    return result
