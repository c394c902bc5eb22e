"""`promptflow.entities` as tool code imports it: the input settings of tool inputs."""

from promptflow._core.tool import DynamicList, GeneratedBy, InputSetting

__all__ = ["InputSetting", "DynamicList", "GeneratedBy"]
