"""`promptflow.core` names that flow code imports."""

from dataclasses import dataclass
from typing import Optional

from promptflow._core.metric_logger import log_metric
from promptflow._core.tool import ToolProvider, tool

log_flow_metric = log_metric


@dataclass
class ModelConfiguration:
    pass


@dataclass
class AzureOpenAIModelConfiguration(ModelConfiguration):
    azure_deployment: str = ""
    azure_endpoint: Optional[str] = None
    api_version: Optional[str] = None
    api_key: Optional[str] = None
    connection: Optional[str] = None


@dataclass
class OpenAIModelConfiguration(ModelConfiguration):
    model: str = ""
    base_url: Optional[str] = None
    api_key: Optional[str] = None
    organization: Optional[str] = None
    connection: Optional[str] = None


__all__ = [
    "log_metric",
    "log_flow_metric",
    "tool",
    "ToolProvider",
    "ModelConfiguration",
    "AzureOpenAIModelConfiguration",
    "OpenAIModelConfiguration",
]
