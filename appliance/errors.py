"""Operator-facing failures: what went wrong, on which value, and what to do next."""


class OperatorError(Exception):
    """A failure an operator can fix; the CLI prints message and hint, never a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


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


class Unauthorized(RequestError):
    status = 401


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


class Throttled(RequestError):
    status = 429

    def __init__(self, message: str, detail: str = "", *, retry_after: int) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after
