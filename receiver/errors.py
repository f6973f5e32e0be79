"""The error hierarchy. Each error reads as a sentence and carries the fields an operator needs.

Only the HTTP middleware and the CLI turn these into statuses and exit codes.
"""

from __future__ import annotations


class ReceiverError(Exception):
    """Base of every error the receiver raises on purpose."""


class ConfigError(ReceiverError):
    """A config, rules or playbook file is wrong; names the file, line, and what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        where: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.where = where
        super().__init__(str(self))

    def __str__(self) -> str:
        place = ""
        if self.file:
            place = self.file + (f":{self.line}" if self.line else "")
        if self.where:
            place = f"{place} ({self.where})" if place else self.where
        return f"{place}: {self.message}" if place else self.message


class ConfigErrors(ReceiverError):
    """Several configuration errors found at once; all are reported, not just the first."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class TemplateError(ReceiverError):
    """A template failed to compile or render; names the template's place and the cause."""

    def __init__(self, where: str, cause: str) -> None:
        self.where = where
        self.cause = cause
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"template {self.where}: {self.cause}"


class PayloadError(ReceiverError):
    """A webhook body is not a valid Alertmanager payload; names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RequestError(ReceiverError):
    """An API request has a bad parameter; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.param}: {self.message}"


class NotFound(ReceiverError):
    """The thing asked for does not exist (or was dropped by retention)."""

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.kind} {self.ident!r} not found"


class Conflict(ReceiverError):
    """The request is valid but the thing is not in a state that allows it."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Unauthorized(ReceiverError):
    """No credentials, or wrong ones (401)."""


class Forbidden(ReceiverError):
    """Known credentials whose role does not allow the request (403)."""


class Overloaded(ReceiverError):
    """The work queue is full: nothing of the payload was recorded; the sender should retry (503)."""

    def __init__(self, queued: int, limit: int) -> None:
        self.queued = queued
        self.limit = limit
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"the work queue is full ({self.queued} waiting or running, limit {self.limit}); retry later"


class StoreUnavailable(ReceiverError):
    """The state store cannot be reached; the work was not recorded and should be retried."""

    def __init__(self, store: str, cause: str) -> None:
        self.store = store
        self.cause = cause
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.store} store unavailable: {self.cause}"


class ActionError(ReceiverError):
    """An action could not be carried out (bad rendered parameters, a missing executable...)."""

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.action}: {self.message}"
