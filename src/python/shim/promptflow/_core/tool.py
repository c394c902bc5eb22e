"""The `@tool` decorator: marks a function as a flow tool and returns it unchanged."""

#: Attribute set on every function decorated with `@tool`.
TOOL_MARKER = "__flow_tool__"
STREAMING_OPTION_PARAMETER_ATTR = "_streaming_option_parameter"


class ToolType:
    LLM = "llm"
    PYTHON = "python"
    PROMPT = "prompt"
    CUSTOM_LLM = "custom_llm"
    CSHARP = "csharp"


class ToolProvider:
    """Base class of class-based tools: a node's inputs that name `__init__` parameters make the
    instance, the others are passed to its `@tool` method (as promptflow does)."""

    _initialize_inputs = None
    _required_initialize_inputs = None
    _instance_init_params = None

    def __new__(cls, *args, **kwargs):
        # record the init arguments, so a subclass need not pass them to super().__init__()
        names = list(cls.get_initialize_inputs().keys())
        params = dict(zip(names, args))
        params.update(kwargs)
        cls._instance_init_params = params
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        self._init_params = self._instance_init_params

    @classmethod
    def get_initialize_inputs(cls):
        import inspect

        return {k: v for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}

    @classmethod
    def get_required_initialize_inputs(cls):
        return {k: v for k, v in cls.get_initialize_inputs().items() if v.default is v.empty}


def tool(
    func=None,
    *args,
    name=None,
    description=None,
    type=None,
    input_settings=None,
    streaming_option_parameter=None,
    **kwargs,
):
    """Mark `func` as a tool; works bare (`@tool`) and with arguments (`@tool(name=...)`)."""

    def tool_decorator(f):
        setattr(f, TOOL_MARKER, True)
        f.__name = name
        f.__description = description
        f.__type = type
        f.__input_settings = input_settings
        f.__extra_info = kwargs
        if streaming_option_parameter and isinstance(streaming_option_parameter, str):
            setattr(f, STREAMING_OPTION_PARAMETER_ATTR, streaming_option_parameter)
        return f

    if func is not None:
        return tool_decorator(func)
    return tool_decorator


class InputSetting:
    """Settings of a tool input (UI hints in promptflow); kept as given, unused by `flow`."""

    def __init__(self, **kwargs):
        self.is_multi_select = kwargs.pop("is_multi_select", None)
        self.allow_manual_entry = kwargs.pop("allow_manual_entry", None)
        self.enabled_by = kwargs.pop("enabled_by", None)
        self.enabled_by_value = kwargs.pop("enabled_by_value", None)
        self.dynamic_list = kwargs.pop("dynamic_list", None)
        self.generated_by = kwargs.pop("generated_by", None)
        self._kwargs = kwargs


class DynamicList:
    """A function that lists an input's values in promptflow's UI; kept as given."""

    def __init__(self, function=None, input_mapping=None):
        self.function = function
        self.input_mapping = input_mapping


class GeneratedBy:
    """A function that generates an input's value in promptflow's UI; kept as given."""

    def __init__(self, function=None, reverse_function=None, input_settings=None):
        self.function = function
        self.reverse_function = reverse_function
        self.input_settings = input_settings


def is_tool(obj):
    """True when `obj` was decorated with `@tool`."""
    return callable(obj) and getattr(obj, TOOL_MARKER, False) is True


__all__ = [
    "tool",
    "ToolProvider",
    "ToolType",
    "is_tool",
    "InputSetting",
    "DynamicList",
    "GeneratedBy",
]
