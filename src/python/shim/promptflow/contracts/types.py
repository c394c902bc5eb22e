"""Marker string types that tool signatures use."""


class Secret(str):
    """A string that holds a secret."""


class PromptTemplate(str):
    """A string that holds a Jinja2 prompt template."""


class FilePath(str):
    """A string that holds a file path."""


class AssistantDefinition:
    """An assistant's model, instructions and tools, as promptflow defines it."""

    def __init__(self, model, instructions, tools):
        self.model = model
        self.instructions = instructions
        self.tools = tools
        self._tool_invoker = None

    @staticmethod
    def deserialize(data):
        return AssistantDefinition(
            model=data.get("model", ""),
            instructions=data.get("instructions", ""),
            tools=data.get("tools", []),
        )

    def serialize(self):
        return {"model": self.model, "instructions": self.instructions, "tools": self.tools}


class AttrDict(dict):
    """A dictionary whose keys are also attributes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def __setattr__(self, key, value):
        self[key] = value


__all__ = ["Secret", "PromptTemplate", "FilePath", "AssistantDefinition", "AttrDict"]
