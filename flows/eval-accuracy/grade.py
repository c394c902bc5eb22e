from promptflow.core import tool


@tool
def grade(groundtruth: str, prediction: str) -> str:
    """Line-level grade: "Correct" when the labels match, ignoring case and outer whitespace."""
    same = str(groundtruth).strip().lower() == str(prediction).strip().lower()
    return "Correct" if same else "Incorrect"
