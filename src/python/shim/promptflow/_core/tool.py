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
    """Base class of class-based tools (accepted for imports; `flow` calls plain functions)."""

    def __init__(self, *args, **kwargs):
        pass


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


def is_tool(obj):
    """True when `obj` was decorated with `@tool`."""
    return callable(obj) and getattr(obj, TOOL_MARKER, False) is True


__all__ = ["tool", "ToolProvider", "ToolType", "is_tool"]
