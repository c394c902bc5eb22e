"""Tracing: `@trace` records each call of a traced function made during a flow line as a span
(name, inputs, output or error, times, nested calls) that `flow` keeps with the line's node
record (`api_calls`, as promptflow records them). At most `MAX_SPANS` spans are kept
per call of a node; the rest are counted and said so."""

import functools
import inspect
import time

MAX_SPANS = 200
_MAX_VALUE_CHARS = 2000

# The worker swaps in a fresh collector before each node call (None: not recording).
_collector = None


class _Collector:
    def __init__(self):
        self.roots = []
        self.stack = []
        self.count = 0
        self.dropped = 0

    def start(self, name, inputs):
        if self.count >= MAX_SPANS:
            self.dropped += 1
            return None
        self.count += 1
        span = {"name": name, "type": "Function", "inputs": inputs, "start_time": time.time(), "children": []}
        (self.stack[-1]["children"] if self.stack else self.roots).append(span)
        self.stack.append(span)
        return span

    def end(self, span, output=None, error=None):
        if span is None:
            return
        span["end_time"] = time.time()
        if error is not None:
            span["error"] = {"type": type(error).__name__, "message": str(error)}
        else:
            span["output"] = output
        if self.stack and self.stack[-1] is span:
            self.stack.pop()

    def result(self):
        out = list(self.roots)
        if self.dropped:
            out.append(
                {
                    "name": "(capped)",
                    "type": "Note",
                    "message": "%d more traced calls were not recorded: at most %d spans are kept per node call"
                    % (self.dropped, MAX_SPANS),
                }
            )
        return out


def _short(value):
    try:
        import json

        text = json.dumps(value, default=repr)
        if len(text) <= _MAX_VALUE_CHARS:
            return json.loads(text)
        return text[:_MAX_VALUE_CHARS] + "... (truncated)"
    except Exception:  # noqa: BLE001
        return repr(value)[:_MAX_VALUE_CHARS]


def _inputs(func, args, kwargs):
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
        return {k: _short(v) for k, v in bound.arguments.items() if k != "self"}
    except (TypeError, ValueError):
        return {"args": _short(list(args)), "kwargs": _short(kwargs)}


def trace(func=None, **options):
    """Record each call of `func` as a span of the current flow line (see the module doc)."""
    if func is None:
        return lambda f: trace(f, **options)
    name = options.get("name") or getattr(func, "__qualname__", getattr(func, "__name__", "call"))

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_traced(*args, **kwargs):
            c = _collector
            span = c.start(name, _inputs(func, args, kwargs)) if c is not None else None
            try:
                result = await func(*args, **kwargs)
            except BaseException as e:
                if c is not None:
                    c.end(span, error=e)
                raise
            if c is not None:
                c.end(span, output=_short(result))
            return result

        async_traced.__original_function = func
        return async_traced

    @functools.wraps(func)
    def traced(*args, **kwargs):
        c = _collector
        span = c.start(name, _inputs(func, args, kwargs)) if c is not None else None
        try:
            result = func(*args, **kwargs)
        except BaseException as e:
            if c is not None:
                c.end(span, error=e)
            raise
        if c is not None:
            c.end(span, output=_short(result) if not inspect.isgenerator(result) else "<generator>")
        return result

    traced.__original_function = func
    return traced


def start_trace(*args, **kwargs):
    """No-op: `flow` records traces itself."""
    return None


__all__ = ["trace", "start_trace"]
