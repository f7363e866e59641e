"""Domain errors. Each carries a stable machine-readable ``code`` for APIs and ACKs."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class TransitionRefused(DomainError):
    """A lifecycle event that may not be applied to the order as it stands."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


class InvalidOrder(DomainError):
    code = "invalid_order"


class RuleFileError(DomainError):
    code = "invalid_rule_file"
