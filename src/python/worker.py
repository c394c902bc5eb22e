"""`flow` Python worker: runs `@tool` functions for a flow, one request at a time.

Started as `python3 worker.py SHIM_DIR` with the flow directory as working directory.
Protocol: one JSON object per line on the original stdin/stdout, which are moved to private
file descriptors first, so tools that print (or read stdin) cannot corrupt the channel.
Prints made during a call are captured and returned with its result.
"""

import asyncio
import dataclasses
import datetime
import enum
import importlib.util
import inspect
import io
import json
import math
import os
import re
import sys
import traceback
import types as _types
import typing

if sys.version_info < (3, 9):
    sys.stderr.write("flow needs Python 3.9 or newer, this is %s\n" % sys.version.split()[0])
    sys.exit(3)

WORKER_FILE = os.path.abspath(__file__)
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
SHIM_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(WORKER_FILE)

# --- channel: private fds for the protocol; fd 0 <- /dev/null, fd 1 -> stderr -------------------
_proto_in = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
_proto_out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
os.dup2(2, 1)
sys.stdin = open(os.devnull, "r")
sys.stdout = sys.stderr

# --- import path: shim first, then the flow directory -------------------------------------------
_here = os.path.dirname(WORKER_FILE)
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != _here]
sys.path.insert(0, os.getcwd())
sys.path.insert(0, SHIM_DIR)
for _name in [n for n in sys.modules if n == "promptflow" or n.startswith("promptflow.")]:
    del sys.modules[_name]

import promptflow  # noqa: E402
import promptflow.connections as _connections  # noqa: E402
import promptflow.tracing as _tracing  # noqa: E402
from promptflow._core import metric_logger as _metric_logger  # noqa: E402
from promptflow.tracing import _operation_context  # noqa: E402
from promptflow._core import host as _host  # noqa: E402
from promptflow._core.tool import is_tool  # noqa: E402
from promptflow.contracts import multimedia as _multimedia  # noqa: E402

_CONNECTION_CLASSES = {
    name: getattr(_connections, name)
    for name in _connections.__all__
    if isinstance(getattr(_connections, name), type)
}

_UnionType = getattr(_types, "UnionType", None)  # `A | B` (Python 3.10+)

_modules = {}  # absolute path -> module
_tools = {}  # (file as requested, function) -> _Tool
_instances = {}  # (absolute path, class name) -> a flex flow's class entry, made once
_loop = None

# A flex flow's class entry init, resolved by flow (connections as dicts): read once and removed
# from the environment, so processes the flow starts do not inherit it (it may hold keys).
_FLEX_INIT = json.loads(os.environ.pop("FLOW_FLEX_INIT", "") or "null") or {}


class ToolLoadError(Exception):
    """A tool file could not be found, imported, or has no usable tool function."""

    def __init__(self, kind, message, **extra):
        super().__init__(message)
        self.kind = kind
        self.extra = extra


# --- loading -------------------------------------------------------------------------------------


PF_MAIN_MODULE_NAME = "__pf_main__"


def _load_module(path, as_main=False):
    """Import the file `path` once. A DAG node's tool script is loaded as promptflow loads it: as
    module `__pf_main__`, not registered in `sys.modules` (`as_main`); other files under their stem."""
    key = (path, True) if as_main else path
    module = _modules.get(key)
    if module is not None:
        return module
    if not os.path.isfile(path):
        raise ToolLoadError("not_found", "file not found: %s" % path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if as_main:
        name = PF_MAIN_MODULE_NAME
    else:
        name = stem if stem.isidentifier() and stem not in sys.modules else "__flow_tool_%d" % len(_modules)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ToolLoadError("not_found", "cannot load %s as a Python module (is it a .py file?)" % path)
    module = importlib.util.module_from_spec(spec)
    if not as_main:
        sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: B036 - report anything the import raises
        if not as_main:
            sys.modules.pop(name, None)
        message = _describe(e)
        if isinstance(e, ModuleNotFoundError):
            message += "; install it into the Python that flow runs (%s) or point FLOW_PYTHON at one that has it" % (
                sys.executable
            )
        raise ToolLoadError("load", message, error=e, file=path)
    _modules[key] = module
    return module


def _find_tool(path, function, as_main=True):
    module = _load_module(path, as_main=as_main)
    if function and "." in function:
        return _find_class_tool(module, path, function)
    if function:
        f = getattr(module, function, None)
        if f is None or not callable(f):
            tools = _tools_in(module)
            raise ToolLoadError(
                "function_not_found",
                "no function '%s' in %s" % (function, path),
                found=[t.__name__ for t in tools],
            )
        return f
    tools = _tools_in(module)
    methods = _tool_methods_in(module)
    if len(tools) + len(methods) == 1:
        return tools[0] if tools else _ClassTool(*methods[0])
    found = [t.__name__ for t in tools] + ["%s.%s" % (c.__name__, m.__name__) for c, m in methods]
    kind = "no_tool" if not found else "ambiguous"
    raise ToolLoadError(kind, "expected exactly one @tool function in %s" % path, found=found)


# --- class-based tools ---------------------------------------------------------------------------


def _tool_methods_in(module):
    """(class, function) for each `@tool` method of a class defined in `module` (a `ToolProvider`
    subclass as promptflow collects them, or any class)."""
    out = []
    for cls in vars(module).values():
        if not inspect.isclass(cls) or cls.__module__ != module.__name__:
            continue
        for attr, f in vars(cls).items():
            if inspect.isfunction(f) and is_tool(f):
                out.append((cls, f))
    return out


def _find_class_tool(module, path, function):
    class_name, _, method = function.partition(".")
    cls = getattr(module, class_name, None)
    f = vars(cls).get(method) if inspect.isclass(cls) else None
    if not inspect.isfunction(f):
        found = ["%s.%s" % (c.__name__, m.__name__) for c, m in _tool_methods_in(module)]
        raise ToolLoadError("function_not_found", "no method '%s' in %s" % (function, path), found=found)
    return _ClassTool(cls, f)


class _ClassTool:
    """A `@tool` method of a class, as promptflow's tool resolver runs it: the node's inputs that
    name `__init__` parameters make the instance (once per distinct set of values), the rest are
    passed to the method."""

    __slots__ = ("cls", "f", "name", "params", "by_name", "accepts_kwargs", "init_names", "instances")

    def __init__(self, cls, f):
        self.cls = cls
        self.f = f
        self.name = "%s.%s" % (cls.__name__, f.__name__)
        call_params, self.accepts_kwargs = _signature(f)
        call_params = call_params[1:]  # self
        init = cls.__init__ if cls.__init__ is not object.__init__ else None
        init_params = list(_signature(init)[0])[1:] if init is not None else []
        call_names = {p.name for p in call_params}
        init_params = [p for p in init_params if p.name not in call_names]
        self.init_names = [p.name for p in init_params]
        self.params = call_params + init_params
        self.by_name = {p.name: p for p in self.params}
        self.instances = {}

    def bind(self, kwargs, request):
        """The bound method for this call's init inputs, and the call's own inputs."""
        init = {k: kwargs.pop(k) for k in self.init_names if k in kwargs}
        raw = {k: v for k, v in (request.get("kwargs") or {}).items() if k in init}
        raw.update({k: v for k, v in (request.get("connections") or {}).items() if k in init})
        key = json.dumps(raw, sort_keys=True, default=repr)
        instance = self.instances.get(key)
        if instance is None:
            try:
                instance = self.cls(**init)
            except Exception as e:
                raise ToolInitError("making %s(%s) failed: (%s) %s" % (
                    self.cls.__name__, ", ".join(init), type(e).__name__, e)) from e
            self.instances[key] = instance
        return getattr(instance, self.f.__name__), kwargs


class ToolInitError(Exception):
    """A class-based tool's `__init__` raised."""


class _Tool:
    """A resolved tool function with its signature, computed once."""

    __slots__ = ("f", "params", "by_name", "accepts_kwargs")

    def __init__(self, f):
        self.f = f
        self.params, self.accepts_kwargs = _signature(f)
        self.by_name = {p.name: p for p in self.params}


def _resolve(request):
    key = (request["file"], request.get("function"))
    t = _tools.get(key)
    if t is None:
        path = os.path.abspath(key[0])
        function = key[1] or ""
        if function.endswith(".__aggregate__"):
            # a flex flow's `__aggregate__`: a method of the class entry's instance
            instance = _instance(path, function[: -len(".__aggregate__")])
            t = _Tool(_Aggregate(instance.__aggregate__))
            _tools[key] = t
            return t
        f = _find_tool(path, key[1], as_main=request.get("op") != "call_flex")
        if isinstance(f, _ClassTool):
            _tools[key] = f
            return f
        if inspect.isclass(f):
            # a flex flow's class entry: one instance per worker, made with the init flow
            # checked and resolved, then called like a function
            f = _instance(path, key[1]).__call__
        t = _Tool(f)
        _tools[key] = t
    return t


def _instance(path, name):
    """The one instance of a flex flow's class entry `name` in `path`, made with its init."""
    obj = _instances.get((path, name))
    if obj is not None:
        return obj
    cls = _find_tool(path, name)
    if not inspect.isclass(cls):
        raise ToolLoadError("not_found", "'%s' in %s is not a class" % (name, path))
    try:
        obj = cls(**_init_kwargs(name))
    except Exception as e:  # noqa: BLE001 - reported like an import error
        raise ToolLoadError("load", "making %s() failed: %s" % (name, _describe(e)), error=e, file=path)
    _instances[(path, name)] = obj
    return obj


def _init_kwargs(name):
    """The init arguments of class `name`, as promptflow resolves them: connection names are
    connections, model configuration dicts are model configurations."""
    init = _FLEX_INIT if _FLEX_INIT.get("class") == name else {}
    kwargs = dict(init.get("kwargs") or {})
    for key, spec in (init.get("connections") or {}).items():
        kwargs[key] = _make_connection(spec["value"], spec.get("class") or "CustomConnection", key)
    for key, spec in (init.get("model_configs") or {}).items():
        kwargs[key] = _make_model_config(spec)
    return kwargs


def _make_model_config(spec):
    import promptflow.core as core

    cls = getattr(core, spec["class"])
    value = dict(spec.get("value") or {})
    conn = spec.get("connection")
    if conn is None:
        return cls(**value)
    # as promptflow's `from_connection`: the connection's endpoint, key and version
    c = _make_connection(conn["value"], conn.get("class") or "", value.get("connection"))
    if spec["class"] == "AzureOpenAIModelConfiguration":
        return cls(
            azure_deployment=value.get("azure_deployment") or "",
            azure_endpoint=getattr(c, "api_base", None),
            api_version=getattr(c, "api_version", None),
            api_key=getattr(c, "api_key", None),
        )
    return cls(
        model=value.get("model") or "",
        base_url=getattr(c, "base_url", None) or getattr(c, "api_base", None),
        api_key=getattr(c, "api_key", None),
        organization=getattr(c, "organization", None),
    )


class _Aggregate:
    """A class entry's `__aggregate__`, called as promptflow's script executor calls it: with
    the succeeded lines' outputs (dicts readable as attributes); a returned dict is logged as
    metrics; a failure is a warning and leaves the metrics empty."""

    def __init__(self, method):
        self.method = method
        self.__name__ = "__aggregate__"
        self.__signature__ = inspect.signature(method)

    def __call__(self, **kwargs):
        from promptflow.contracts.types import AttrDict

        kwargs = {
            k: [AttrDict(v) if isinstance(v, dict) else v for v in (items or [])] for k, items in kwargs.items()
        }
        try:
            output = _run(self.method, kwargs)
        except Exception as e:  # noqa: BLE001 - promptflow warns and leaves the metrics empty
            print(
                "warning: __aggregate__ failed (%s: %s); the run has no metrics from it" % (type(e).__name__, e),
            )
            return None
        if isinstance(output, dict):
            for k, v in output.items():
                try:
                    _metric_logger.log_metric(k, v)
                except TypeError as e:
                    print("warning: __aggregate__: %s; left out of the metrics" % e)
        else:
            print(
                "warning: __aggregate__ returned %s, not a dict: no metrics are recorded from it"
                % type(output).__name__
            )
        return output


def _tools_in(module):
    marked = [v for v in vars(module).values() if inspect.isfunction(v) and is_tool(v)]
    own = [f for f in marked if f.__module__ == module.__name__]
    return own or marked


# --- signatures and arguments --------------------------------------------------------------------


def _annotation_name(annotation):
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation.split(".")[-1].strip()
    name = getattr(annotation, "__name__", None)
    return name if name else str(annotation)


def _connection_type(annotation):
    types = _connection_types(annotation)
    return types[0] if types else None


def _connection_types(annotation):
    """The connection classes a parameter's annotation names: one, or each member of a
    `Union[...]` / `A | B` / `Optional[...]` (also written as a string)."""
    if isinstance(annotation, type) and issubclass(annotation, _connections._Connection):
        return [annotation.__name__]
    members = None
    if typing.get_origin(annotation) is typing.Union or (
        _UnionType is not None and isinstance(annotation, _UnionType)
    ):
        members = typing.get_args(annotation)
    elif isinstance(annotation, str) and ("Union[" in annotation or "|" in annotation):
        members = [m for m in re.split(r"[\[\],|\s]+", annotation.replace("Union[", "[")) if m]
    if members is not None:
        out = []
        for m in members:
            name = m.__name__ if isinstance(m, type) else _annotation_name(m)
            name = (name or "").split(".")[-1]
            if name in _CONNECTION_CLASSES and name not in out:
                out.append(name)
        return out
    name = _annotation_name(annotation)
    if name and name in _CONNECTION_CLASSES:
        return [name]
    return []


def _actual_connection_class(value):
    """The promptflow class of the connection `flow` resolved, from its `api_type`."""
    api_type = value.get("api_type")
    if api_type == "azure":
        return _connections.AzureOpenAIConnection
    if api_type == "openai":
        return _connections.OpenAIConnection
    return _connections.CustomConnection


def _signature(f):
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return [], True
    params = []
    accepts_kwargs = False
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            accepts_kwargs = True
            continue
        if p.kind == p.VAR_POSITIONAL:
            continue
        params.append(p)
    return params, accepts_kwargs


def _make_connection(value, annotation, param):
    if isinstance(value, _connections._Connection):
        return value
    if not isinstance(value, dict):
        raise TypeError(
            "connection parameter '%s' got %s instead of a connection; check the node's connection"
            % (param, type(value).__name__)
        )
    cls = None
    union = _connection_types(annotation)
    if isinstance(annotation, type) and issubclass(annotation, _connections._Connection):
        cls = annotation
    elif len(union) > 1:
        # a Union: the member that is the connection's own type (flow refuses a connection of
        # none of them before the run, as promptflow does)
        actual = _actual_connection_class(value)
        cls = actual if actual.__name__ in union else _CONNECTION_CLASSES[union[0]]
    elif union:
        cls = _CONNECTION_CLASSES[union[0]]
    if cls is None:
        cls = _connections.CustomConnection
    name = value.get("name")
    api_key = value.get("api_key")
    api_base = value.get("api_base")
    extras = value.get("extras") or {}
    if issubclass(cls, _connections.CustomConnection):
        secrets = dict(value.get("secrets") or {})
        configs = dict(value.get("configs") or {})
        if api_key is not None:
            secrets.setdefault("api_key", api_key)
        for key in ("api_base", "api_type", "api_version"):
            if value.get(key) is not None:
                configs.setdefault(key, value[key])
        for key, v in extras.items():
            if key not in secrets:
                configs.setdefault(key, v)
        conn = cls(secrets=secrets, configs=configs, name=name)
        return conn
    if cls is _connections.AzureOpenAIConnection:
        kwargs = {"api_base": api_base, "api_key": api_key, "name": name}
        for key in ("api_type", "api_version"):
            if value.get(key):
                kwargs[key] = value[key]
        return cls(**kwargs)
    if cls is _connections.OpenAIConnection:
        return cls(api_key=api_key, base_url=api_base, organization=extras.get("organization"), name=name)
    try:
        return cls(api_key=api_key, api_base=api_base, name=name)
    except TypeError:
        return cls(api_key=api_key, name=name)


# --- images ------------------------------------------------------------------------------------
# flow sends images as promptflow's multimedia dicts ({"data:image/png;base64": ...} or ;url);
# tools get promptflow.contracts.multimedia.Image objects, and an Image they return goes back
# as such a dict.

_IMAGE_KEY_PREFIX = "data:image/"


def _image_from_dict(value):
    if not (isinstance(value, dict) and len(value) == 1):
        return None
    key, data = next(iter(value.items()))
    if not (isinstance(key, str) and key.startswith(_IMAGE_KEY_PREFIX) and isinstance(data, str)):
        return None
    mime, _, kind = key[len("data:"):].rpartition(";")
    if kind == "base64":
        import base64

        return _multimedia.Image(base64.b64decode(data.split(",")[-1]), mime_type=mime)
    if kind == "url":
        return _multimedia.Image(_fetch_image(data), mime_type=mime, source_url=data)
    if kind == "path":
        with open(data, "rb") as fin:
            return _multimedia.Image(fin.read(), mime_type=mime)
    return None


def _check_image_url(url):
    """Refuse what promptflow's AntiSSRF refuses: a scheme other than http(s), or a host that
    resolves to a private, loopback, link-local or otherwise non-public address."""
    import ipaddress
    import socket
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("Failed to fetch image from URL: %s (only http(s) URLs)" % url)
    for info in socket.getaddrinfo(parsed.hostname, parsed.port or None):
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise ValueError(
                "Failed to fetch image from URL: %s (%s is not a public address)" % (url, address)
            )


def _fetch_image(url):
    import urllib.request

    class _Checked(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            _check_image_url(newurl)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    _check_image_url(url)
    opener = urllib.request.build_opener(_Checked)
    with opener.open(url, timeout=60) as response:
        return response.read()


def _load_images(value):
    """Multimedia dicts inside a value become Image objects (promptflow's load_multimedia_data)."""
    if isinstance(value, dict):
        image = _image_from_dict(value)
        if image is not None:
            return image
        return {k: _load_images(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_load_images(v) for v in value]
    return value


def _image_json(image):
    """An Image returned by a tool, as the multimedia dict flow records (promptflow keeps the URL
    of an image that came from one)."""
    mime = getattr(image, "_mime_type", None) or "image/*"
    if getattr(image, "source_url", None):
        return {"data:%s;url" % mime: image.source_url}
    return {"data:%s;base64" % mime: image.to_base64()}


def _load_text(value):
    """In an openai-vision flow, {"type": "text", "text": ...} dicts inside a value become Text
    objects (promptflow's TextProcessor)."""
    if isinstance(value, dict):
        if _is_text_dict(value):
            return _multimedia.Text.deserialize(value)
        return {k: _load_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_load_text(v) for v in value]
    return value


def _is_text_dict(value):
    if len(value) != 2 or value.get("type") != "text" or "text" not in value:
        return False
    text = value["text"]
    return isinstance(text, str) or (isinstance(text, dict) and isinstance(text.get("value"), str))


def _serialize_text(value):
    """A Text a tool returns goes back as its dict, as promptflow's openai-vision processor
    persists it."""
    if isinstance(value, _multimedia.Text):
        return value.serialize()
    if isinstance(value, dict):
        return {k: _serialize_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_serialize_text(v) for v in value]
    return value


def _build_kwargs(t, request):
    f, params, by_name = t.f, t.params, t.by_name
    kwargs = _load_images(request.get("kwargs") or {})
    if request.get("message_format") == "openai-vision":
        kwargs = _load_text(kwargs)
    for name in request.get("bypassed") or ():
        p = by_name.get(name)
        if p is not None and p.default is not p.empty:
            kwargs.pop(name, None)
        else:
            kwargs[name] = None
    for name, value in (request.get("connections") or {}).items():
        p = by_name.get(name)
        annotation = p.annotation if p is not None else inspect.Parameter.empty
        kwargs[name] = _make_connection(value, annotation, name)
    if not t.accepts_kwargs:
        unexpected = [k for k in kwargs if k not in by_name]
        if unexpected:
            raise TypeError(
                "%s() got unexpected input(s) %s; its parameters are: %s. "
                "Remove the input from the node or add the parameter to the function."
                % (f.__name__, ", ".join("'%s'" % k for k in unexpected), ", ".join(by_name) or "(none)")
            )
        missing = [
            p.name
            for p in params
            if p.default is p.empty and p.name not in kwargs and p.kind != p.POSITIONAL_ONLY
        ]
        if missing:
            raise TypeError(
                "%s() is missing input(s) %s; add them to the node's inputs"
                % (f.__name__, ", ".join("'%s'" % k for k in missing))
            )
    return kwargs


# --- running -------------------------------------------------------------------------------------


def _event_loop():
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


def _run(f, kwargs, join=True):
    result = f(**kwargs)
    if inspect.isawaitable(result):
        result = _event_loop().run_until_complete(result)
    if not join:
        return result
    if inspect.isgenerator(result) or isinstance(result, (map, filter, zip)):
        # as promptflow does for a non-streaming run: join the streamed pieces
        result = "".join(str(item) for item in result)
    elif inspect.isasyncgen(result):

        async def collect(agen):
            return [item async for item in agen]

        result = "".join(str(item) for item in _event_loop().run_until_complete(collect(result)))
    return result


def _to_json(value):
    """Turn a tool's return value into JSON-able data, as promptflow's serializer does."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite_marker(value)
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _key(k)): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except TypeError:
            pass
        return [_to_json(v) for v in items]
    if isinstance(value, _connections._Connection):
        return value.name
    if isinstance(value, datetime.datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _to_json(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "serialize"):
            return _to_json(value.serialize())
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    for method in ("model_dump", "dict"):  # pydantic v2 / v1
        dump = getattr(value, method, None)
        if callable(dump) and type(value).__module__.split(".")[0] != "builtins":
            try:
                data = dump()
            except Exception:
                continue
            if isinstance(data, dict):
                return _to_json(data)
    if isinstance(value, _multimedia.PFBytes):
        return _image_json(value)
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    return repr(value)


def _key(k):
    if k is None:
        return "null"
    if isinstance(k, bool):
        return "true" if k else "false"
    return str(k)


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encode_output(output):
    try:
        return _dumps(output)
    except (TypeError, ValueError, OverflowError):
        return _dumps(_to_json(output))


# --- errors --------------------------------------------------------------------------------------


def _describe(e):
    if isinstance(e, SyntaxError):
        where = "%s, line %s" % (e.filename, e.lineno)
        if e.offset:
            where += ", column %s" % e.offset
        return "%s (%s)" % (e.msg, where)
    return str(e)


def _user_traceback(e):
    tb = e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == WORKER_FILE or filename.startswith(("<frozen importlib", _ASYNCIO_DIR)):
            tb = tb.tb_next
        else:
            break
    return "".join(traceback.format_exception(type(e), e, tb))


def _error(kind, e=None, message=None, **extra):
    err = {"kind": kind}
    if e is not None:
        err["type"] = type(e).__name__
        err["message"] = message if message is not None else _describe(e)
        err["traceback"] = _user_traceback(e)
    else:
        err["message"] = message or ""
    err.update(extra)
    return {"ok": False, "error": err}


def _load_error(e):
    if e.kind == "load":
        cause = e.extra["error"]
        return _error("load", cause, message=str(e), file=e.extra.get("file"))
    return _error(e.kind, message=str(e), found=e.extra.get("found", []))


# --- requests ------------------------------------------------------------------------------------


def _inspect(request):
    t = _resolve(request)
    init_names = getattr(t, "init_names", ())
    out = []
    for p in t.params:
        out.append(
            {
                "name": p.name,
                "has_default": p.default is not p.empty,
                "connection_type": _connection_type(p.annotation),
                "connection_types": _connection_types(p.annotation),
                "annotation": _annotation_name(p.annotation),
                "init": p.name in init_names,
            }
        )
    name = request.get("function") or getattr(t, "name", None) or t.f.__name__  # a class entry: its name, not __call__
    return {"ok": True, "function": name, "params": out, "accepts_kwargs": t.accepts_kwargs}


def _flex_output(output, stream=False):
    """A flex flow's return value as its outputs, as promptflow's script executor does: a dict
    is the outputs, a dataclass its fields (generators joined), anything else `{"output": value}`.
    With `stream` (flow serve's event stream), a generator output is sent piece by piece as it
    yields (the other outputs first, as promptflow's serving app sends them) and then joined."""
    if stream:
        return _flex_stream_output(output)
    if isinstance(output, dict):
        return {k: _join_stream(v) for k, v in output.items()}
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return {f.name: _join_stream(getattr(output, f.name)) for f in dataclasses.fields(output)}
    return {"output": output}


def _join_nested_streams(value):
    """Generators inside a DAG tool's dict (or list) output, joined into strings as promptflow
    joins a non-streaming run's generator outputs (the top-level one is joined by `_run`)."""
    if isinstance(value, dict):
        return {k: _join_nested_streams(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_nested_streams(v) for v in value]
    if inspect.isgenerator(value) or isinstance(value, (map, filter, zip)):
        return "".join(str(item) for item in value)
    if inspect.isasyncgen(value):

        async def collect(agen):
            return [item async for item in agen]

        return "".join(str(item) for item in _event_loop().run_until_complete(collect(value)))
    return value


def _is_stream(value):
    return inspect.isgenerator(value) or inspect.isasyncgen(value) or isinstance(value, (map, filter, zip))


def _flex_stream_output(output):
    if _is_stream(output):
        return {"output": _stream_out(output, "output")}
    if isinstance(output, dict):
        fields = dict(output)
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        fields = {f.name: getattr(output, f.name) for f in dataclasses.fields(output)}
    else:
        return {"output": output}
    streams = [k for k, v in fields.items() if _is_stream(v)]
    if len(streams) > 1:
        for k in streams:
            _close_stream(fields[k])
        raise MultipleStreamOutputFieldsNotSupported("Multiple stream output fields not supported.")
    if not streams:
        return fields
    name = streams[0]
    head = {k: v for k, v in fields.items() if k != name}
    if head:
        _send_stream_line('{"head":%s}' % _encode_output(head))
    fields[name] = _stream_out(fields[name], name)
    return fields


class MultipleStreamOutputFieldsNotSupported(Exception):
    """A flex flow streamed in flow serve returned more than one generator (promptflow's
    serving app refuses it with this message)."""


class _StreamStopped(Exception):
    """flow asked to stop a stream (the client went away or the line was cancelled)."""


# The most characters a streamed output may total: its pieces are also joined for the line's
# record (and for nodes that use the output), which must not grow without bound.
_MAX_STREAM_CHARS = 64 << 20


def _send_stream_line(line):
    """Send one stream line to flow and wait for its go-ahead: flow answers `next` once the piece
    is queued for the client (so a slow client slows the generator), `stop` when the stream's
    reader is gone."""
    with _host._lock:
        _proto_out.write(line.encode("utf-8", "replace") + b"\n")
        _proto_out.flush()
        answer = _proto_in.readline()
    if not answer:
        raise ConnectionError("flow closed the channel during a stream")
    if answer.strip() != b"next":
        raise _StreamStopped()


def _close_stream(value):
    try:
        if inspect.isgenerator(value):
            value.close()
        elif inspect.isasyncgen(value):
            _event_loop().run_until_complete(value.aclose())
    except Exception:  # noqa: BLE001 - closing is best effort; the stream is over either way
        pass


def _stream_items(value):
    if inspect.isasyncgen(value):
        loop = _event_loop()
        while True:
            try:
                yield loop.run_until_complete(value.__anext__())
            except StopAsyncIteration:
                return
    else:
        yield from value


def _stream_out(value, field):
    """Send each piece `value` yields to flow as it comes (`field`: the flex output it is, None
    for a DAG node's own output); the pieces joined are the output."""
    parts = []
    size = 0
    field_json = _dumps(field)
    try:
        for item in _stream_items(value):
            text = str(item)
            size += len(text)
            if size > _MAX_STREAM_CHARS:
                raise ValueError(
                    "the streamed output is larger than %d MiB; flow keeps a streamed output whole "
                    "for the line's record and stops there" % (_MAX_STREAM_CHARS >> 20)
                )
            parts.append(text)
            _send_stream_line('{"piece":%s,"field":%s}' % (_encode_output(item), field_json))
    finally:
        _close_stream(value)
    return "".join(parts)


def _join_stream(value):
    if inspect.isgenerator(value) or isinstance(value, (map, filter, zip)):
        return "".join(str(item) for item in value)
    return value


def _call(request, flex=False):
    t = _resolve(request)
    metrics = []
    captured = io.StringIO()
    _metric_logger._collected = metrics
    collector = _tracing._Collector()
    _tracing._collector = collector
    context = request.get("context")
    context_token = _operation_context._enter(context) if context is not None else None
    sys.stdout = captured
    try:
        kwargs = _build_kwargs(t, request)
        f = t.f
        if isinstance(t, _ClassTool):
            f, kwargs = t.bind(kwargs, request)
        stream = bool(request.get("stream"))
        output = _run(f, kwargs, join=not stream)
        if request.get("message_format") == "openai-vision":
            output = _serialize_text(output)
        if flex:
            output = _flex_output(output, stream=stream)
        else:
            if stream and _is_stream(output):
                output = _stream_out(output, None)
            output = _join_nested_streams(output)
    except BaseException as e:  # noqa: B036 - the tool's failure is the call's result
        if isinstance(e, KeyboardInterrupt):
            raise
        sys.stdout = sys.stderr
        if isinstance(e, _StreamStopped):
            return _error("cancelled", message="the stream was stopped by flow")
        # what the tool did before it failed stays in its record, as promptflow keeps it
        return _error("exception", e, stdout=captured.getvalue(), traces=_to_json(collector.result()))
    finally:
        sys.stdout = sys.stderr
        _metric_logger._collected = []
        _tracing._collector = None
        if context_token is not None:
            _operation_context._leave(context_token)
    encoded_metrics = [[k, v if math.isfinite(v) else repr(v)] for k, v in metrics]
    # output is already encoded so a non-JSON value never breaks the envelope
    return '{"ok":true,"output":%s,"metrics":%s,"stdout":%s,"traces":%s}' % (
        _encode_output(output),
        _dumps(encoded_metrics),
        _dumps(captured.getvalue()),
        _encode_output(collector.result()),
    )


# NaN and the infinities travel as markers, strings no JSON text holds by accident (flow's
# src/non_finite.rs): flow writes them as promptflow does (`NaN`, `Infinity`, `-Infinity`).
_NON_FINITE_PREFIX = "\x00flow:"
_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _non_finite_marker(value):
    return _NON_FINITE_PREFIX + ("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))


def _restore_non_finite(value):
    """`value` with every marker flow sent turned back into its float."""
    if isinstance(value, str):
        if value.startswith(_NON_FINITE_PREFIX):
            return _NON_FINITE.get(value[len(_NON_FINITE_PREFIX):], value)
        return value
    if isinstance(value, dict):
        return {k: _restore_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_non_finite(v) for v in value]
    return value


def _handle(line):
    try:
        request = json.loads(line)
        if b"\\u0000flow:" in line:
            request = _restore_non_finite(request)
        op = request.get("op")
        if op == "call":
            return _call(request)
        if op == "call_flex":
            return _call(request, flex=True)
        if op == "inspect":
            return _inspect(request)
        if op == "ping":
            return {"ok": True}
        return _error("protocol", message="unknown op %r" % op)
    except ToolLoadError as e:
        return _load_error(e)
    except Exception as e:
        return _error("exception", e)


_MODEL_CONFIGS = ("AzureOpenAIModelConfiguration", "OpenAIModelConfiguration")

_FLEX_TYPES = {"str": "string", "int": "int", "float": "double", "bool": "bool", "list": "list", "dict": "object"}


def _flex_type(annotation, default):
    """promptflow's flow input type for a parameter: from its annotation, else its default's type."""
    if annotation is inspect.Parameter.empty and default is not inspect.Parameter.empty:
        annotation = type(default)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string"
    name = _annotation_name(annotation)
    return _FLEX_TYPES.get(name or "", "object")


def _describe_entry(path, name):
    """The signature of a flex flow's entry `name` in the file `path`, as one JSON object."""
    try:
        module = _load_module(os.path.abspath(path))
    except ToolLoadError as e:
        return _load_error(e)
    entry = getattr(module, name, None)
    if entry is None:
        found = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
            and getattr(v, "__module__", None) == module.__name__
        ]
        return _error("function_not_found", message="no '%s' in %s" % (name, path), found=found)
    init_params = []
    init_accepts_kwargs = False
    has_aggregate = False
    aggregate_param = None
    if inspect.isclass(entry):
        call = getattr(entry, "__call__", None)
        if call is None or call is type.__call__ or not inspect.isfunction(call):
            return _error("not_a_function", message="class '%s' in %s has no __call__ method" % (name, path))
        init = entry.__init__ if entry.__init__ is not object.__init__ else None
        if init is not None:
            init_sig, init_kwargs = _signature(init)
            init_accepts_kwargs = init_kwargs
            for p in list(init_sig)[1:]:
                has_default = p.default is not p.empty
                model_config = _annotation_name(p.annotation)
                init_params.append(
                    {
                        "name": p.name,
                        "has_default": has_default,
                        "type": _flex_type(p.annotation, p.default),
                        "default": _to_json(p.default) if has_default else None,
                        "connection_type": _connection_type(p.annotation),
                        "model_config": model_config if model_config in _MODEL_CONFIGS else None,
                    }
                )
        aggregate = getattr(entry, "__aggregate__", None)
        has_aggregate = callable(aggregate)
        if has_aggregate:
            agg_params = [p.name for p in list(inspect.signature(aggregate).parameters.values())[1:]]
            if len(agg_params) != 1:
                return _error(
                    "not_a_function",
                    message="%s.__aggregate__ takes %d parameters besides self; promptflow calls it with exactly "
                    "one (the list of line outputs)" % (name, len(agg_params)),
                )
            aggregate_param = agg_params[0]
        params, accepts_kwargs = _signature(call)
        params = params[1:]  # self
    elif not inspect.isfunction(entry):
        return _error("not_a_function", message="'%s' in %s is a %s, not a function" % (name, path, type(entry).__name__))
    else:
        params, accepts_kwargs = _signature(entry)
    out = []
    for p in params:
        has_default = p.default is not p.empty
        out.append(
            {
                "name": p.name,
                "type": _flex_type(p.annotation, p.default),
                "has_default": has_default,
                "default": _to_json(p.default) if has_default else None,
                "connection_type": _connection_type(p.annotation),
            }
        )
    if inspect.isclass(entry):
        kind = "class"
    elif inspect.iscoroutinefunction(entry) or inspect.isasyncgenfunction(entry):
        kind = "async"
    else:
        kind = "function"
    return {
        "ok": True,
        "kind": kind,
        "function": entry.__name__,
        "params": out,
        "accepts_kwargs": accepts_kwargs,
        "init_params": init_params,
        "init_accepts_kwargs": init_accepts_kwargs,
        "has_aggregate": has_aggregate,
        "aggregate_param": aggregate_param,
    }


# --- host channel: Python code asks flow for model calls mid-request ------------------------------


def _host_transport(data):
    """Send one host request line and return flow's reply line (called under `_host._lock`)."""
    _proto_out.write(data)
    _proto_out.flush()
    line = _proto_in.readline()
    if not line:
        raise ConnectionError("flow closed the channel while a model call was pending")
    return line


def _install_host_channel():
    _host._transport = _host_transport


def _write_reply(response):
    # under the host lock: a thread still making a host call cannot interleave its request
    with _host._lock:
        _proto_out.write(response.encode("utf-8", "replace") + b"\n")
        _proto_out.flush()


def main():
    if len(sys.argv) > 4 and sys.argv[2] == "--describe-entry":
        try:
            reply = _describe_entry(sys.argv[3], sys.argv[4])
        except Exception as e:  # noqa: BLE001 - reported to flow, which refuses the flow
            reply = _error("exception", e)
        _proto_out.write((_dumps(reply) + "\n").encode("utf-8", "replace"))
        _proto_out.flush()
        return
    _install_host_channel()
    _proto_out.write(
        (_dumps({"ready": True, "python": sys.version.split()[0], "shim": promptflow.__file__}) + "\n").encode()
    )
    _proto_out.flush()
    while True:
        line = _proto_in.readline()
        if not line:
            break
        response = _handle(line)
        if not isinstance(response, str):
            response = _dumps(response)
        _write_reply(response)


if __name__ == "__main__":
    main()
