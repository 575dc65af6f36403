"""The chatops error tree.

::

    ChatopsError                    base of everything chatops raises on purpose
    ├── UserError                   shown to the person who typed the command (ephemeral), never logged as a fault
    │   └── ArgError                the command line did not parse against the command's declared arguments
    ├── ConfigError                 settings or policy are missing or malformed; one line per problem
    └── InternalError               a bug or an unexpected state: logged with a correlation id, the user sees an apology
        └── IntegrationError        a remote service (Slack, PagerDuty, Zoom, ...) failed after its retries

A ``UserError`` message is written for the on-call at 03:00: what went wrong and what to type instead.
"""

from __future__ import annotations

__all__ = [
    "ArgError",
    "ChatopsError",
    "ConfigError",
    "IntegrationError",
    "InternalError",
    "UserError",
]


class ChatopsError(Exception):
    """Base class for errors chatops raises deliberately."""


class UserError(ChatopsError):
    """A mistake by the person running a command; the message is shown to them as is."""


class ArgError(UserError):
    """The arguments did not parse; the message says which and shows the usage."""


class ConfigError(ChatopsError):
    """Settings or policy are invalid. ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InternalError(ChatopsError):
    """Something that should not happen; logged with a correlation id."""


class IntegrationError(InternalError):
    """A remote service failed for good (after retries).

    ``service`` names it ("PagerDuty"), ``attempts`` says how many tries were made and ``status`` is the last HTTP
    status (or ``None`` when the service could not be reached at all).
    """

    def __init__(self, service: str, message: str, *, attempts: int = 1, status: int | None = None) -> None:
        self.service = service
        self.attempts = attempts
        self.status = status
        super().__init__(f"{service}: {message}")
