"""The one error the emulator's model raises: a canonical gRPC status and the message the client sees."""

from __future__ import annotations

__all__ = ["RpcError", "invalid"]


class RpcError(Exception):
    """A failed call: a canonical gRPC status name and the message the client sees."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def invalid(message: str) -> RpcError:
    """An ``INVALID_ARGUMENT`` error with this message."""
    return RpcError("INVALID_ARGUMENT", message)
