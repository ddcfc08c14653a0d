"""A token credential for tests: always the same bearer token."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from multicloud_store_azure.emulator.model import DEFAULT_TOKEN

__all__ = ["StaticTokenCredential"]


class StaticTokenCredential:
    """An azure-core token credential that always returns the same bearer token.

    It satisfies both ``TokenCredential`` (``get_token``) and ``SupportsTokenInfo`` (``get_token_info``, which
    the Key Vault SDK prefers). Every scope it is asked for is appended to :attr:`requested_scopes`.

    Args:
        token: The bearer token to hand out; the emulator's default token unless told otherwise.

    Raises:
        ValueError: If ``token`` is empty.
    """

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._token = token
        self.requested_scopes: list[str] = []

    def __repr__(self) -> str:
        # Never show the token itself.
        return f"{type(self).__name__}(token=<redacted>)"

    def _expiry(self) -> int:
        # An hour ahead keeps the SDK from refreshing (it refreshes within five minutes of expiry).
        return int(time.time()) + 3600

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Return the fixed token, whatever scope, tenant or claims are asked for.

        Args:
            *scopes: The scopes requested; recorded in :attr:`requested_scopes`.
            claims: Ignored.
            tenant_id: Ignored.
            enable_cae: Ignored.
            **kwargs: Ignored.

        Returns:
            The token, valid for an hour.
        """
        self.requested_scopes.extend(scopes)
        return AccessToken(self._token, self._expiry())

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """Return the fixed token in the ``SupportsTokenInfo`` shape.

        Args:
            *scopes: The scopes requested; recorded in :attr:`requested_scopes`.
            options: Ignored.

        Returns:
            The token, valid for an hour.
        """
        self.requested_scopes.extend(scopes)
        return AccessTokenInfo(self._token, self._expiry(), token_type="Bearer")

    def close(self) -> None:
        """Release nothing; present because ``SupportsTokenInfo`` requires it."""

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
