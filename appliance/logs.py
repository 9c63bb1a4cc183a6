"""The appliance's event logs: the one format every process shares lives in operator_errors.logs."""

from operator_errors.logs import JsonFormatter, TextFormatter, configure_logging, event_fields

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "event_fields"]
