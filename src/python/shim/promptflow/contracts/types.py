"""Marker string types that tool signatures use."""


class Secret(str):
    """A string that holds a secret."""


class PromptTemplate(str):
    """A string that holds a Jinja2 prompt template."""


class FilePath(str):
    """A string that holds a file path."""


__all__ = ["Secret", "PromptTemplate", "FilePath"]
