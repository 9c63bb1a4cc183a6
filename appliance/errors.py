"""Operator-facing failures (the one OperatorError, re-exported) and HTTP request errors for the API."""

from operator_errors import OperatorError as OperatorError  # the one type; `as` re-exports it


class ConfigError(OperatorError):
    """A configuration value that cannot be used; the message names the key and its source."""


class RequestError(Exception):
    """A request the control plane refuses; the API turns it into {"message", "detail"} + status."""

    status = 400

    def __init__(self, message: str, detail: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.field = field


class InvalidInput(RequestError):
    status = 400


class CountedFailure(InvalidInput):
    """Bad input a throttle counted (a wrong current password): the transaction that raises it
    still commits (Database.transaction), so the count outlives the refusal."""


class Unauthorized(RequestError):
    status = 401


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


class Gone(RequestError):
    status = 410


class TooLarge(RequestError):
    status = 413


class Unavailable(RequestError):
    """Something this process needs for the request cannot be read now (a key, a signer)."""

    status = 503


class Throttled(RequestError):
    status = 429

    def __init__(self, message: str, detail: str = "", *, retry_after: int) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


class UnderMaintenance(Unavailable):
    """A write refused while maintenance mode is on (an upgrade, rollback or restore is running)."""

    def __init__(self, reason: str, since: str) -> None:
        super().__init__(
            f"The appliance is in maintenance: {reason} (since {since}). Changes are refused until it ends.",
            "Reads still work. Retry this request when maintenance ends (GET /api/v2/maintenance says when"
            " it is off); nothing was changed.")
        self.reason = reason
        self.since = since
