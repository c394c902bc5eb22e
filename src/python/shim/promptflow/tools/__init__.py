"""`promptflow.tools` (promptflow-tools' LLM tools), provided by `flow`: model calls go through
flow's connections, providers, rate limiter, response cache and run records."""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
