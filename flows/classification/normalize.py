import re

from promptflow.core import tool

CATEGORIES = ("billing", "technical", "account", "other")


@tool
def normalize(reply: str) -> str:
    """Map the model's raw reply to one of the categories.

    Robust to case, punctuation and extra words ("Category: Billing.", "**technical**"):
    the first word that is a category name wins; no category word means "other".
    """
    for word in re.findall(r"[a-z]+", str(reply or "").lower()):
        if word in CATEGORIES:
            return word
    return "other"
