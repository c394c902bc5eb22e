"""`promptflow._internal` names that older tools import."""

from promptflow._core.metric_logger import add_metric_logger, log_metric, remove_metric_logger
from promptflow._core.tool import ToolProvider, tool
from promptflow.tracing import trace

__all__ = ["tool", "ToolProvider", "log_metric", "add_metric_logger", "remove_metric_logger", "trace"]
