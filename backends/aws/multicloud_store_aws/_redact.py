"""Keep secret values and credentials out of botocore's DEBUG logs.

botocore logs, at DEBUG: every request's parameters (``botocore.endpoint``, "Making request ... with params"),
every prepared request with its headers (``botocore.endpoint``, "Sending http request"), every response body
(``botocore.parsers``) and every canonical request it signs (``botocore.auth``). Turned on, that would print each
``SecretString`` we write or read, the keys and token an ``AssumeRole`` returns, and the session token header.
A filter on those three loggers rewrites such records' arguments; it costs nothing unless DEBUG is enabled, since
no record is created below the logger's level.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["install"]

REDACTED = "<redacted by multicloud-store>"
# Fields whose presence means the whole body is secret: Secrets Manager values, STS credentials.
_MARKERS = ("SecretString", "SecretBinary", "SecretAccessKey", "SessionToken")
_BYTE_MARKERS = tuple(marker.encode() for marker in _MARKERS)
# The session token header, in a request's repr ('X-Amz-Security-Token': b'...') or a canonical request (name:value).
_TOKEN = re.compile(r"""(x-amz-security-token['"]?\s*:\s*b?['"]?)[^'"\s,}]+""", re.IGNORECASE)
_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.auth")
_lock = threading.Lock()


class RedactingFilter(logging.Filter):
    """Rewrite a record's arguments so that no secret value or credential is formatted; never drop a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record's arguments in place.

        Args:
            record: A record of one of botocore's loggers.

        Returns:
            Always True.
        """
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_scrub(arg) for arg in record.args)
        return True


def _has_marker(value: object) -> bool:
    if isinstance(value, (bytes, bytearray)):
        return any(marker in value for marker in _BYTE_MARKERS)
    if isinstance(value, str):
        return any(marker in value for marker in _MARKERS)
    return False


def _scrub(value: object) -> object:
    if isinstance(value, dict) and "body" in value:  # a request dict
        return {**value, "body": REDACTED} if _has_marker(value["body"]) else value
    if _has_marker(value):
        return REDACTED
    if isinstance(value, (bytes, bytearray, str)):
        text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
        return _TOKEN.sub(rf"\1{REDACTED}", text) if _TOKEN.search(text) else value
    headers = getattr(value, "headers", None)  # a prepared request: its repr shows the headers
    if headers is not None and "X-Amz-Security-Token" in headers:
        return _TOKEN.sub(rf"\1{REDACTED}", str(value))
    return value


def install() -> None:
    """Add the filter to botocore's loggers, once per process."""
    with _lock:
        for name in _LOGGERS:
            target = logging.getLogger(name)
            if not any(isinstance(existing, RedactingFilter) for existing in target.filters):
                target.addFilter(RedactingFilter())
