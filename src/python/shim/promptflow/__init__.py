"""Minimal stand-in for Microsoft's `promptflow` package, provided by `flow`.

Flows written for promptflow import `tool`, `log_metric`, connection classes and a few
contracts from here; `flow` runs them without the real package installed.
"""

from promptflow._core.metric_logger import log_metric
from promptflow._core.tool import ToolProvider, tool

__version__ = "0.0.0+flow-shim"

# backward compatibility, as promptflow has it
log_flow_metric = log_metric

__all__ = ["log_metric", "log_flow_metric", "tool", "ToolProvider", "__version__"]
