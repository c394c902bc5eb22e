"""promptflow-tools' SerpAPI tool needs SerpAPI, a third-party search service flow does not call."""

raise ImportError(
    "promptflow.tools.serpapi calls SerpAPI (serpapi.com), a third-party search service flow does not "
    "provide; install Microsoft's promptflow-tools and call it from your own Python tool, or use another search"
)
