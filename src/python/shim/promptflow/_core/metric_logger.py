"""`log_metric`: metrics logged during a tool call are collected by the `flow` worker."""

# The worker swaps in a fresh list before each call and reads it afterwards.
_collected = []
_loggers = []


def log_metric(key, value, variant_id=None):
    """Log a numeric metric for the current run.

    :param key: Metric name.
    :param value: Metric value (int or float).
    :param variant_id: Variant id for the metric (accepted, not recorded separately).
    """
    if not isinstance(key, str) or not key:
        raise TypeError(f"log_metric: the metric name must be a non-empty string, got {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"log_metric: the value of metric '{key}' must be a number (int or float), "
            f"got {type(value).__name__} {value!r}; convert it with float(...) first"
        )
    value = float(value)
    _collected.append((key, value))
    for logger in list(_loggers):
        try:
            logger(key, value, variant_id)
        except TypeError:
            logger(key, value)


def add_metric_logger(logger_func):
    if callable(logger_func) and logger_func not in _loggers:
        _loggers.append(logger_func)


def remove_metric_logger(logger_func):
    if logger_func in _loggers:
        _loggers.remove(logger_func)


__all__ = ["log_metric", "add_metric_logger", "remove_metric_logger"]
