"""The host channel: Python code asks `flow` (the process running this worker) to do something
for it — a model call, a template render — and waits for the answer.

`flow`'s worker installs the transport; outside a `flow` worker there is none and a call says
so. Calls from several threads are serialized by one lock: one request, then its reply.
"""

import builtins
import json
import threading

# The longest request flow accepts (it refuses longer ones too).
MAX_REQUEST_BYTES = 16 << 20

_lock = threading.RLock()
# set by flow's worker: a function sending one request line (bytes) and returning the reply line
_transport = None


def _image_value(image):
    """An Image as flow takes images: promptflow's multimedia dict (its URL when it came from one,
    as promptflow-tools sends it)."""
    mime = getattr(image, "_mime_type", None) or "image/*"
    if getattr(image, "source_url", None):
        return {"data:%s;url" % mime: image.source_url}
    return {"data:%s;base64" % mime: image.to_base64()}


def _default(value):
    from promptflow.contracts.multimedia import PFBytes

    if isinstance(value, PFBytes):
        return _image_value(value)
    for method in ("model_dump", "dict"):
        dump = getattr(value, method, None)
        if callable(dump):
            try:
                return dump()
            except Exception:  # noqa: BLE001 - fall back to text
                break
    return str(value)


def _exception(type_name, message):
    from promptflow.tools import exception as _exc

    cls = getattr(_exc, type_name or "", None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = getattr(builtins, type_name or "", None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
    try:
        return cls(message)
    except TypeError:
        return RuntimeError("%s: %s" % (type_name, message))


def available():
    """Whether this process runs inside a `flow` worker (model calls go to flow)."""
    return _transport is not None


def call(op, **payload):
    """Ask flow to do `op` with `payload`; returns its result or raises its error."""
    if _transport is None:
        raise RuntimeError(
            "promptflow.tools and Prompty calls are made by flow; this code is not running in a flow worker"
        )
    request = {"host": op}
    request.update(payload)
    data = json.dumps(request, ensure_ascii=False, separators=(",", ":"), default=_default).encode("utf-8")
    if len(data) > MAX_REQUEST_BYTES:
        raise ValueError(
            "a request to flow of %d bytes is larger than %d MiB" % (len(data), MAX_REQUEST_BYTES >> 20)
        )
    with _lock:
        line = _transport(data + b"\n")
    try:
        reply = json.loads(line)
    except ValueError as e:
        raise RuntimeError("invalid reply from flow: %s" % e)
    if reply.get("ok"):
        return reply.get("result")
    error = reply.get("error") or {}
    raise _exception(error.get("type"), error.get("message") or "flow reported an error")


_STREAM_KEY = "__flow_stream__"


def stream(op, **payload):
    """Ask flow for a model call whose text comes as the model writes it: returns a generator of
    the pieces (a cached answer comes as one piece)."""
    handle = call(op, stream=True, **payload)
    if not _is_stream(handle):
        raise RuntimeError("flow did not start a stream for `%s`" % op)
    return _pieces(handle[_STREAM_KEY])


def call_maybe_streaming(op, **payload):
    """Ask flow for `op`, which decides whether its answer streams (a Prompty whose parameters
    say `stream: true`): the answer, or a generator of its pieces."""
    result = call(op, stream="auto", **payload)
    if _is_stream(result):
        return _pieces(result[_STREAM_KEY])
    return result


def _is_stream(result):
    return isinstance(result, dict) and len(result) == 1 and isinstance(result.get(_STREAM_KEY), int)


def _pieces(stream_id):
    def pieces():
        while True:
            reply = call("stream_next", id=stream_id)
            for piece in reply.get("pieces") or ():
                yield piece
            if reply.get("done"):
                result = reply.get("result")
                if not reply.get("streamed") and result is not None:
                    yield result
                return

    return pieces()
