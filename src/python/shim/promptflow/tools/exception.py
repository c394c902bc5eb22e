"""promptflow-tools' exception types, raised for model calls flow makes for a tool."""


class UserErrorException(Exception):
    pass


class SystemErrorException(Exception):
    pass


class ToolValidationError(UserErrorException):
    pass


class InvalidConnectionType(ToolValidationError):
    pass


class ChatAPIInvalidRole(ToolValidationError):
    pass


class ChatAPIFunctionRoleInvalidFormat(ToolValidationError):
    pass


class ChatAPIInvalidFunctions(ToolValidationError):
    pass


class ChatAPIInvalidTools(ToolValidationError):
    pass


class JinjaTemplateError(ToolValidationError):
    pass


class ListDeploymentsError(UserErrorException):
    pass


class WrappedOpenAIError(UserErrorException):
    """An error from the model endpoint (promptflow: "OpenAI API hits ...")."""


class ExceedMaxRetryTimes(WrappedOpenAIError):
    pass


class OpenAIAPIError(WrappedOpenAIError):
    pass


class LLMError(UserErrorException):
    pass


class MissingRequiredInput(UserErrorException):
    pass


class PromptyException(UserErrorException):
    pass
