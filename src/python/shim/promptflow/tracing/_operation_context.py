"""`OperationContext`: the dict of what the current operation is, as promptflow's tracing package
has it (`promptflow.tracing._operation_context`). `flow`'s worker fills it for each call it makes
of a line's Python code with what `flow` has — the same keys promptflow's executor sets:

- `flow_id`: `default_flow_id` (promptflow's constant for a local flow);
- `root_run_id`: the batch run's name in a batch (`flow run --data`, `flow eval`), else a fresh
  UUID per line (promptflow's line run id of `pf flow test`);
- `run_mode`: `Batch` or `Test`; `batch_input_source` (`Data`, or `Run` when a column mapping
  reads `${run.outputs...}`) in a batch;
- `execution_target`: `flex` or `dag`; `user_agent`: `flow/<version>`;
- `_otel_attributes`: `line_run_id`, or `batch_run_id` and `line_number`, or `is_aggregation`.

Changes code makes to it last for that call only, as promptflow restores the context after a line.
"""

import copy
from contextvars import ContextVar

from promptflow import __version__ as VERSION


class OperationContext(dict):
    """The context of the current operation: a dict whose keys also read and write as attributes,
    one per context (`contextvars`), made on first use."""

    _CONTEXT_KEY = "operation_context"
    _current_context = ContextVar(_CONTEXT_KEY, default=None)
    USER_AGENT_KEY = "user_agent"
    REQUEST_ID_KEY = "request_id"
    EXECUTION_TARGET = "execution_target"
    _DEFAULT_TRACING_KEYS = "_default_tracing_keys"
    _OTEL_ATTRIBUTES = "_otel_attributes"
    _TRACKING_KEYS = "_tracking_keys"

    def copy(self):
        ctx = OperationContext(self)
        ctx[OperationContext._OTEL_ATTRIBUTES] = copy.copy(self._get_otel_attributes())
        return ctx

    def _add_otel_attributes(self, key, value):
        attributes = self.get(OperationContext._OTEL_ATTRIBUTES, {})
        attributes[key] = value
        self[OperationContext._OTEL_ATTRIBUTES] = attributes

    def _remove_otel_attributes(self, keys):
        if isinstance(keys, str):
            keys = [keys]
        attributes = self.get(OperationContext._OTEL_ATTRIBUTES, {})
        for key in keys:
            attributes.pop(key, None)
        self[OperationContext._OTEL_ATTRIBUTES] = attributes

    def _get_otel_attributes(self):
        attributes = self.get(OperationContext._OTEL_ATTRIBUTES, {})
        return {k: v for k, v in attributes.items() if v is not None}

    @classmethod
    def get_instance(cls):
        instance = cls._current_context.get()
        if instance is None:
            instance = OperationContext()
            cls._current_context.set(instance)
        if cls._TRACKING_KEYS not in instance and cls._DEFAULT_TRACING_KEYS in instance:
            instance[cls._TRACKING_KEYS] = copy.copy(instance[cls._DEFAULT_TRACING_KEYS])
        return instance

    @classmethod
    def set_instance(cls, instance):
        cls._current_context.set(instance)

    def __setattr__(self, name, value):
        if not isinstance(name, str):
            raise TypeError("Name must be a string")
        self[name] = value

    def __getattr__(self, name):
        if name in self:
            return self[name]
        return super().__getattribute__(name)

    def __delattr__(self, name):
        if name in self:
            del self[name]
        else:
            super().__delattr__(name)

    def get_user_agent(self):
        parts = []
        if OperationContext.USER_AGENT_KEY in self:
            parts.append(self.get(OperationContext.USER_AGENT_KEY))
        parts.append("promptflow-tracing/%s" % VERSION)
        return " ".join(parts).strip()

    def append_user_agent(self, user_agent):
        if OperationContext.USER_AGENT_KEY in self:
            if user_agent not in self.user_agent:
                self.user_agent = "%s %s" % (self.user_agent.strip(), user_agent.strip())
        else:
            self.user_agent = user_agent

    def get_request_id(self):
        if OperationContext.REQUEST_ID_KEY in self:
            return self.get(OperationContext.REQUEST_ID_KEY)
        return "unknown"

    def set_default_tracing_keys(self, keys):
        self[self._DEFAULT_TRACING_KEYS] = keys
        if self._TRACKING_KEYS not in self:
            self[self._TRACKING_KEYS] = copy.copy(keys)
        else:
            for key in keys:
                self[self._TRACKING_KEYS].add(key)

    def set_execution_target(self, execution_target):
        self[OperationContext.EXECUTION_TARGET] = execution_target
        self._add_otel_attributes(OperationContext.EXECUTION_TARGET, execution_target)

    def get_context_dict(self):
        return dict(self)

    def _get_tracking_info(self):
        keys = self.get(self._TRACKING_KEYS, self.get(self._DEFAULT_TRACING_KEYS, []))
        return {k: v for k, v in self.items() if k in keys}


# promptflow's executor's DEFAULT_TRACING_KEYS
_DEFAULT_KEYS = {"run_mode", "root_run_id", "flow_id", "batch_input_source", "execution_target"}


def _enter(values):
    """The worker, before a call: a fresh context holding `values` (what flow sent). Returns
    the token `_leave` takes."""
    instance = OperationContext(values)
    instance.set_default_tracing_keys(set(_DEFAULT_KEYS))
    return OperationContext._current_context.set(instance)


def _leave(token):
    """The worker, after the call: the context before it."""
    OperationContext._current_context.reset(token)


__all__ = ["OperationContext"]
