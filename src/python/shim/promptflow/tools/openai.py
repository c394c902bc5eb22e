"""promptflow-tools' OpenAI tool (`chat`, `completion`, class `OpenAI`), run by flow: the request
goes through flow's connection, provider, rate limiter and response cache."""

from promptflow._core.tool import ToolProvider, tool
from promptflow.tools.common import _chat_params, _complete, _completion_params, convert_to_chat_list


class OpenAI(ToolProvider):
    def __init__(self, connection):
        super().__init__()
        self.connection = connection

    @tool
    def completion(
        self,
        prompt,
        model="gpt-3.5-turbo-instruct",
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
        return _complete("completion", self.connection, prompt, model=model, params=params, inputs=kwargs,
                         stream=stream)

    @tool
    def chat(
        self,
        prompt,
        model="gpt-3.5-turbo",
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
        return _complete("chat", self.connection, prompt, model=model, params=params,
                         inputs=convert_to_chat_list(kwargs), stream=stream)


@tool
def completion(connection, prompt, model="gpt-3.5-turbo-instruct", **kwargs):
    return OpenAI(connection).completion(prompt=prompt, model=model, **kwargs)


@tool
def chat(connection, prompt, model="gpt-3.5-turbo", **kwargs):
    return OpenAI(connection).chat(prompt=prompt, model=model, **kwargs)
