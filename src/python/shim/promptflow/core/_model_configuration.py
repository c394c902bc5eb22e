"""`promptflow.core._model_configuration`, promptflow's private home of the model
configuration classes: the same classes as `promptflow.core` exports."""

from promptflow.core import AzureOpenAIModelConfiguration, ModelConfiguration, OpenAIModelConfiguration

__all__ = ["ModelConfiguration", "AzureOpenAIModelConfiguration", "OpenAIModelConfiguration"]
