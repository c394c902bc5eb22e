"""promptflow-tools' embedding tool, run by flow's embeddings provider."""

from enum import Enum

from promptflow._core import host as _host
from promptflow._core.tool import tool
from promptflow.tools.common import _connection


class EmbeddingModel(str, Enum):
    TEXT_EMBEDDING_ADA_002 = "text-embedding-ada-002"
    TEXT_SEARCH_ADA_DOC_001 = "text-search-ada-doc-001"
    TEXT_SEARCH_ADA_QUERY_001 = "text-search-ada-query-001"
    TEXT_EMBEDDING_3_SMALL = "text-embedding-3-small"
    TEXT_EMBEDDING_3_LARGE = "text-embedding-3-large"


@tool
def embedding(connection, input, deployment_name="", model=EmbeddingModel.TEXT_EMBEDDING_ADA_002):
    """The embedding of `input`: `deployment_name` on Azure OpenAI, `model` elsewhere."""
    model = model.value if isinstance(model, Enum) else model
    api_type = getattr(connection, "api_type", None) or ""
    azure = "azure" in str(api_type).lower() or type(connection).__name__ == "AzureOpenAIConnection"
    return _host.call(
        "embedding",
        connection=_connection(connection),
        input=input,
        deployment_name=deployment_name if azure else "",
        model=None if azure else model,
    )
