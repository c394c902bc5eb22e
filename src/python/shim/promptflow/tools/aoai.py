"""promptflow-tools' Azure OpenAI tool (`chat`, `completion`, class `AzureOpenAI`), run by flow:
the request goes through flow's connection, provider, rate limiter and response cache."""

from promptflow._core.tool import ToolProvider, tool
from promptflow.tools.common import _chat_params, _complete, _completion_params, convert_to_chat_list


class AzureOpenAI(ToolProvider):
    def __init__(self, connection):
        super().__init__()
        self.connection = connection

    @tool
    def completion(
        self,
        prompt,
        deployment_name,
        suffix=None,
        max_tokens=16,
        temperature=1.0,
        top_p=1.0,
        n=1,
        stream=False,
        logprobs=None,
        echo=False,
        stop=None,
        presence_penalty=None,
        frequency_penalty=None,
        best_of=1,
        logit_bias={},
        user="",
        **kwargs,
    ):
        params = _completion_params(suffix, max_tokens, temperature, top_p, n, logprobs, echo, stop,
                                    presence_penalty, frequency_penalty, best_of, logit_bias, user)
        return _complete("completion", self.connection, prompt, deployment_name=deployment_name, params=params,
                         inputs=kwargs, stream=stream)

    @tool
    def chat(
        self,
        prompt,
        deployment_name,
        temperature=1.0,
        top_p=1.0,
        n=1,
        stream=False,
        stop=None,
        max_tokens=None,
        presence_penalty=None,
        frequency_penalty=None,
        logit_bias={},
        user="",
        function_call=None,
        functions=None,
        tool_choice=None,
        tools=None,
        response_format=None,
        seed=None,
        **kwargs,
    ):
        params = _chat_params(temperature, top_p, n, stop, max_tokens, presence_penalty, frequency_penalty,
                              logit_bias, user, response_format, seed, tools, tool_choice, functions, function_call)
        return _complete("chat", self.connection, prompt, deployment_name=deployment_name, params=params,
                         inputs=convert_to_chat_list(kwargs), stream=stream)


@tool
def completion(connection, prompt, deployment_name, **kwargs):
    return AzureOpenAI(connection).completion(prompt=prompt, deployment_name=deployment_name, **kwargs)


@tool
def chat(connection, prompt, deployment_name, **kwargs):
    return AzureOpenAI(connection).chat(prompt=prompt, deployment_name=deployment_name, **kwargs)
