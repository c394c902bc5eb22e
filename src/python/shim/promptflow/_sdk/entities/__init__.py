"""`promptflow._sdk.entities` as older flow code imports it: the connection classes (the same
ones as `promptflow.connections`) and the tool input settings."""

from promptflow._core.tool import DynamicList, GeneratedBy, InputSetting
from promptflow.connections import *  # noqa: F401,F403
from promptflow.connections import __all__ as _connections

__all__ = list(_connections) + ["InputSetting", "DynamicList", "GeneratedBy"]
