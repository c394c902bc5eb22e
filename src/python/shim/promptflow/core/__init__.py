"""`promptflow.core` names that flow code imports."""

import dataclasses
import os
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


def _config_fields(configuration):
    """A model configuration (a dataclass or a dict) as the fields flow reads."""
    if configuration is None:
        return {}
    if isinstance(configuration, dict):
        fields = dict(configuration)
    elif dataclasses.is_dataclass(configuration):
        fields = {f.name: getattr(configuration, f.name) for f in dataclasses.fields(configuration)}
        if isinstance(configuration, AzureOpenAIModelConfiguration):
            fields.setdefault("type", "azure_openai")
        elif isinstance(configuration, OpenAIModelConfiguration):
            fields.setdefault("type", "openai")
    else:
        raise TypeError(
            "a Prompty's model configuration must be AzureOpenAIModelConfiguration, OpenAIModelConfiguration "
            "or a dict, not %s" % type(configuration).__name__
        )
    return {k: v for k, v in fields.items() if v not in (None, "")}


class _Response(dict):
    """A whole response as the endpoint sent it (`model.response: all`) when the `openai` package
    is not installed: a dict whose keys also read as attributes, all the way down
    (`response.choices[0].message.content`, `response.usage.prompt_tokens`)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def model_dump(self, **kwargs):
        return _plain(self)


def _attr(value):
    if isinstance(value, dict):
        return _Response((k, _attr(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_attr(v) for v in value]
    return value


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _response_object(body):
    """`model.response: all`: the response as promptflow's Prompty returns it — the `openai`
    package's `ChatCompletion` / `Completion` when that package is installed, else a `_Response`."""
    try:
        if isinstance(body, dict) and body.get("object") == "text_completion":
            from openai.types import Completion as cls
        else:
            from openai.types.chat import ChatCompletion as cls
    except ImportError:
        return _attr(body)
    return cls.model_construct(**body)


class Prompty:
    """A `.prompty` file as a callable, as promptflow's `Prompty`: flow renders it and calls the
    model (its own template engine, connections, providers, rate limiter and response cache), and
    the call is recorded under the node that made it.

    `model` overrides the file's `model:` section: `{"configuration": ..., "parameters": {...}}`
    with an `AzureOpenAIModelConfiguration`, an `OpenAIModelConfiguration` or a dict; a
    configuration's `connection` names a flow connection, else its endpoint and key are used.
    """

    def __init__(self, path, model=None, **kwargs):
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(self.path):
            raise FileNotFoundError("no such .prompty file: %s" % self.path)
        model = dict(model or {})
        unknown = set(model) - {"configuration", "parameters", "api", "response"}
        if unknown:
            raise ValueError("flow's Prompty does not take model keys %s" % ", ".join(sorted(unknown)))
        if model.get("api") is not None:
            raise ValueError("flow's Prompty takes `model.api` only from the .prompty file; remove it here")
        self._response = model.get("response")
        if self._response not in (None, "first", "all"):
            raise ValueError('Prompty\'s `model.response` is %r; use "first" or "all"' % (self._response,))
        self._configuration = _config_fields(model.get("configuration"))
        self._parameters = dict(model.get("parameters") or {})
        if kwargs:
            raise ValueError("flow's Prompty does not take %s" % ", ".join(sorted(kwargs)))

    @classmethod
    def load(cls, source, model=None, **kwargs):
        return cls(source, model=model, **kwargs)

    def __call__(self, *args, **kwargs):
        if args:
            raise TypeError("Prompty takes its inputs by name (prompty(question=...))")
        from promptflow._core import host

        # a generator of the text pieces when the file asks for `stream: true`, as promptflow's
        reply = host.call_maybe_streaming(
            "prompty",
            path=self.path,
            inputs=kwargs,
            configuration=self._configuration,
            parameters=self._parameters,
            response=self._response,
        )
        if not isinstance(reply, dict):
            return reply  # the streamed pieces
        if reply.get("all"):
            return _response_object(reply.get("output"))
        return reply.get("output")

    def estimate_token_count(self, *args, **kwargs):
        """promptflow's estimate: the prompt rendered with these inputs, its tokens counted as
        promptflow counts them (tiktoken's cl100k_base, counted by flow itself), plus the
        parameters' `max_tokens` when given."""
        if args:
            raise ValueError("Prompty can only be rendered with keyword arguments.")
        from promptflow._core import host

        return host.call(
            "prompty_tokens",
            path=self.path,
            inputs=kwargs,
            configuration=self._configuration,
            parameters=self._parameters,
            response=self._response,
        )


__all__ = [
    "log_metric",
    "log_flow_metric",
    "tool",
    "ToolProvider",
    "ModelConfiguration",
    "AzureOpenAIModelConfiguration",
    "OpenAIModelConfiguration",
    "Prompty",
]
