"""promptflow-tools' helpers that flow code imports. Templates are rendered and chats parsed by
flow itself (the same engine and rules as `llm` nodes), through the host channel."""

from promptflow._core import host as _host


class ChatInputList(list):
    """A list of chat inputs that prints each item on its own line, as promptflow's does."""

    def __str__(self):
        return "\n".join(map(str, self))


def to_bool(value) -> bool:
    return str(value).lower() == "true"


def convert_to_chat_list(obj):
    if isinstance(obj, dict):
        return {key: convert_to_chat_list(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return ChatInputList([convert_to_chat_list(item) for item in obj])
    return obj


def render_jinja_template(prompt, trim_blocks=True, keep_trailing_newline=True, escape_dict=None, **kwargs):
    """Render `prompt` with `kwargs` as promptflow's jinja2 environment does."""
    return _host.call("render", template=str(prompt), inputs=kwargs)


def parse_chat(chat_str, images=None, valid_roles=None, image_detail="auto", escape_dict=None):
    """Split a rendered chat prompt (`system:`/`user:`/`assistant:` lines) into messages; a
    message with a line that is exactly `str(image)` of one of `images` becomes content parts
    (text and `image_url` with `image_detail`), as promptflow-tools' parse_chat does."""
    pairs = [[str(image), _host._image_value(image)] for image in (images or [])]
    messages = _host.call("parse_chat", text=str(chat_str), images=pairs, image_detail=image_detail)
    if valid_roles:
        from promptflow.tools.exception import ChatAPIInvalidRole

        for m in messages:
            if m.get("role") not in valid_roles:
                raise ChatAPIInvalidRole(
                    "The Chat API requires a specific format for prompt definition, and the prompt should include "
                    "separate lines as role delimiters: %s." % ", ".join("'%s:\\n'" % r for r in valid_roles)
                )
    return messages


def build_messages(prompt, images=None, image_detail="auto", **kwargs):
    return parse_chat(render_jinja_template(prompt, **kwargs), images=images, image_detail=image_detail)


def _params(**given):
    """The model parameters a tool sends: unset (None, empty) ones left out, as promptflow does."""
    out = {}
    for key, value in given.items():
        if value is None or (isinstance(value, (str, dict, list)) and not value and key != "stop"):
            continue
        if key == "stop" and not value:
            continue
        out[key] = value
    return out


def _completion_params(suffix, max_tokens, temperature, top_p, n, logprobs, echo, stop, presence_penalty,
                       frequency_penalty, best_of, logit_bias, user):
    """The request parameters of promptflow-tools' `completion` (Azure and OpenAI alike)."""
    return _params(
        suffix=suffix,
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        temperature=temperature,
        top_p=top_p,
        n=n,
        logprobs=logprobs,
        echo=str(echo).lower() == "true",
        stop=stop,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        best_of=best_of,
        logit_bias=logit_bias,
        user=user,
    )


def _chat_params(temperature, top_p, n, stop, max_tokens, presence_penalty, frequency_penalty, logit_bias, user,
                 response_format, seed, tools, tool_choice, functions, function_call):
    """The request parameters of promptflow-tools' `chat` (Azure and OpenAI alike): `tools` win
    over the older `functions`."""
    params = _params(
        temperature=temperature,
        top_p=top_p,
        n=n,
        stop=stop,
        max_tokens=int(max_tokens) if max_tokens is not None and str(max_tokens).lower() != "inf" else None,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        logit_bias=logit_bias,
        user=user,
        response_format=response_format,
        seed=seed,
    )
    if tools:
        params["tools"] = tools
        if tool_choice:
            params["tool_choice"] = tool_choice
    elif functions:
        params["functions"] = functions
        if function_call:
            params["function_call"] = function_call
    return params


def _connection(connection):
    """A connection as flow receives it: its name when flow made it, else its fields."""
    if connection is None or isinstance(connection, str):
        return connection
    fields = {}
    for key in ("name", "api_key", "api_base", "base_url", "api_type", "api_version", "organization"):
        value = getattr(connection, key, None)
        if value is None and isinstance(connection, dict):
            value = connection.get(key)
        if value is not None:
            fields[key] = value
    return fields


def _complete(op, connection, prompt, deployment_name=None, model=None, params=None, inputs=None, stream=False):
    payload = dict(
        connection=_connection(connection),
        prompt=str(prompt),
        deployment_name=deployment_name,
        model=model,
        params=params or {},
        inputs=inputs or {},
    )
    if to_bool(stream):
        # the pieces as the model writes them (promptflow-tools returns the text deltas)
        return _host.stream(op, **payload)
    return _host.call(op, **payload)
