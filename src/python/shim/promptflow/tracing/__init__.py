"""Tracing hooks: no-ops in `flow` (it records node timings itself)."""


def trace(func=None, **kwargs):
    """Decorator accepted for compatibility; returns the function unchanged."""
    if func is None:
        return lambda f: f
    return func


def start_trace(*args, **kwargs):
    """No-op: `flow` records traces itself."""
    return None


__all__ = ["trace", "start_trace"]
