"""Connection classes: what a connection-typed tool parameter receives.

Each connection keeps `configs` and `secrets` dicts as promptflow's do; the well-known fields are
also attributes (`conn.api_key`, `conn.api_base`, ...), and `conn["key"]` reads either dict.
"""


class _Connection:
    TYPE = "_Connection"

    def __init__(self, name=None, configs=None, secrets=None, **kwargs):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "configs", dict(configs or {}))
        object.__setattr__(self, "secrets", dict(secrets or {}))
        object.__setattr__(self, "module", "promptflow.connections")
        object.__setattr__(self, "type", self.TYPE)

    def keys(self):
        return list(self.configs.keys()) + list(self.secrets.keys())

    def __getitem__(self, item):
        if item in self.secrets:
            return self.secrets[item]
        if item in self.configs:
            return self.configs[item]
        raise KeyError(f"connection '{self.name}' has no key '{item}'; it has: {', '.join(self.keys())}")

    def __contains__(self, item):
        return item in self.secrets or item in self.configs

    def get(self, item, default=None):
        try:
            return self[item]
        except KeyError:
            return default

    def __repr__(self):
        # never show secret values
        return f"{type(self).__name__}(name={self.name!r}, configs={self.configs!r}, secrets=<{len(self.secrets)} hidden>)"


class _StrongTypeConnection(_Connection):
    _CONFIG_FIELDS = ()

    @property
    def api_key(self):
        return self.secrets.get("api_key")

    @api_key.setter
    def api_key(self, value):
        self.secrets["api_key"] = value

    def __getattr__(self, item):
        # only called when normal lookup fails
        if item in type(self)._CONFIG_FIELDS or item in self.__dict__.get("configs", {}):
            return self.__dict__["configs"].get(item)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{item}'")

    def __setattr__(self, key, value):
        if key in type(self)._CONFIG_FIELDS:
            self.configs[key] = value
        else:
            object.__setattr__(self, key, value)


class AzureOpenAIConnection(_StrongTypeConnection):
    TYPE = "AzureOpenAI"
    _CONFIG_FIELDS = ("api_base", "api_type", "api_version", "auth_mode", "resource_id")

    def __init__(
        self,
        api_base=None,
        api_key=None,
        api_type="azure",
        api_version="2024-02-01",
        auth_mode="key",
        resource_id=None,
        **kwargs,
    ):
        configs = {
            "api_base": api_base,
            "api_type": api_type,
            "api_version": api_version,
            "auth_mode": auth_mode,
            "resource_id": resource_id,
        }
        super().__init__(configs=configs, secrets={"api_key": api_key}, **kwargs)


class OpenAIConnection(_StrongTypeConnection):
    TYPE = "OpenAI"
    _CONFIG_FIELDS = ("organization", "base_url")

    def __init__(self, api_key=None, organization=None, base_url=None, **kwargs):
        if base_url in ("", "_"):
            base_url = None
        configs = {"organization": organization, "base_url": base_url}
        super().__init__(configs=configs, secrets={"api_key": api_key}, **kwargs)

    @property
    def api_base(self):
        """Alias of `base_url` (handy for OpenAI-compatible servers)."""
        return self.configs.get("base_url")


class ServerlessConnection(_StrongTypeConnection):
    TYPE = "Serverless"
    _CONFIG_FIELDS = ("api_base",)

    def __init__(self, api_key=None, api_base=None, **kwargs):
        super().__init__(configs={"api_base": api_base}, secrets={"api_key": api_key}, **kwargs)


class SerpConnection(_StrongTypeConnection):
    TYPE = "Serp"

    def __init__(self, api_key=None, **kwargs):
        super().__init__(secrets={"api_key": api_key}, **kwargs)


class AzureContentSafetyConnection(_StrongTypeConnection):
    TYPE = "AzureContentSafety"
    _CONFIG_FIELDS = ("endpoint", "api_version", "api_type")

    def __init__(self, api_key=None, endpoint=None, api_version="2023-10-01", api_type="Content Safety", **kwargs):
        configs = {"endpoint": endpoint, "api_version": api_version, "api_type": api_type}
        super().__init__(configs=configs, secrets={"api_key": api_key}, **kwargs)


class CognitiveSearchConnection(_StrongTypeConnection):
    TYPE = "CognitiveSearch"
    _CONFIG_FIELDS = ("api_base", "api_version")

    def __init__(self, api_key=None, api_base=None, api_version="2023-11-01", **kwargs):
        configs = {"api_base": api_base, "api_version": api_version}
        super().__init__(configs=configs, secrets={"api_key": api_key}, **kwargs)


class CustomConnection(_Connection):
    """Free-form connection: `secrets` and `configs` dicts, both readable as attributes."""

    TYPE = "Custom"

    def __init__(self, secrets=None, configs=None, **kwargs):
        super().__init__(secrets=secrets, configs=configs, **kwargs)

    def __getattr__(self, item):
        d = self.__dict__
        if item in d.get("secrets", {}):
            return d["secrets"][item]
        if item in d.get("configs", {}):
            return d["configs"][item]
        raise AttributeError(
            f"CustomConnection '{d.get('name')}' has no key '{item}'; "
            f"it has: {', '.join(list(d.get('configs', {})) + list(d.get('secrets', {})))}"
        )

    def is_secret(self, item):
        return item in self.secrets


class CustomStrongTypeConnection(CustomConnection):
    """Base of user-defined typed connections (read like a CustomConnection)."""


__all__ = [
    "OpenAIConnection",
    "AzureOpenAIConnection",
    "ServerlessConnection",
    "SerpConnection",
    "AzureContentSafetyConnection",
    "CognitiveSearchConnection",
    "CustomConnection",
    "CustomStrongTypeConnection",
]
