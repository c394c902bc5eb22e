"""`promptflow.core._flow`, promptflow's private home of `Prompty`, which flow code (among it
the GenAIOps template's evaluation flows) imports from there: the same class as
`promptflow.core.Prompty`."""

from promptflow.core import Prompty

__all__ = ["Prompty"]
