"""Minimal stand-in for Microsoft's `promptflow` package, provided by `flow`.

Flows written for promptflow import `tool`, `log_metric`, connection classes and a few
contracts from here; `flow` runs them without the real package installed.

`promptflow` is a namespace (pkgutil-style, as promptflow's own packages are): a module this shim
does not have (`promptflow.my_tools`, a third-party tool package installed under `promptflow.`)
is found in the other `promptflow` folders on `sys.path`.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from promptflow._core.metric_logger import log_metric
from promptflow._core.tool import ToolProvider, tool

__version__ = "0.0.0+flow-shim"

# backward compatibility, as promptflow has it
log_flow_metric = log_metric

__all__ = ["log_metric", "log_flow_metric", "tool", "ToolProvider", "__version__"]
