"""The project's exception hierarchy, mapped to HTTP status and CLI exit codes in one place each."""

from __future__ import annotations


class DunningError(Exception):
    """Base of every error the platform raises on purpose."""

    http_status = 500
    exit_code = 1


class ConfigurationError(DunningError):
    """A setting is missing or invalid; the message names the key."""

    exit_code = 78  # EX_CONFIG


class NotFound(DunningError):
    http_status = 404
    exit_code = 66


class Forbidden(DunningError):
    http_status = 403
    exit_code = 77


class InvalidInput(DunningError):
    """Bad input from a user or a file; the message names the row/field."""

    http_status = 422
    exit_code = 65  # EX_DATAERR


class Conflict(DunningError):
    """The request conflicts with the current state (e.g. an illegal status change)."""

    http_status = 409
    exit_code = 75


class IntegrityViolation(DunningError):
    """Stored data failed an integrity check (e.g. a broken audit chain)."""

    exit_code = 2
