"""Keep secret values and credentials out of botocore's DEBUG logs.

botocore logs, at DEBUG: every request's parameters (``botocore.endpoint``, "Making request ... with params"),
every prepared request with its headers (``botocore.endpoint``, "Sending http request"), every response body
(``botocore.parsers``) and every canonical request it signs (``botocore.auth``). Turned on, that would print each
``SecretString`` we write or read, the keys and token an ``AssumeRole`` returns, and the session token header.
botocore.httpsession and botocore.endpoint also log, with a traceback, an exception raised while sending, whose
text can hold a header value ("Invalid header value b'...'"); urllib3 logs connection details. A filter on every
botocore, boto3 and urllib3 logger rewrites such records' message, arguments and traceback text, and replaces the
credentials the driver was configured with wherever they appear; it costs nothing unless DEBUG is enabled, since
no record is created below the logger's level.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["install", "register_secrets"]

REDACTED = "<redacted by multicloud-store>"
# Fields whose presence means the whole body is secret: Secrets Manager values, STS credentials.
_MARKERS = ("SecretString", "SecretBinary", "SecretAccessKey", "SessionToken")
_BYTE_MARKERS = tuple(marker.encode() for marker in _MARKERS)
# The session token header, in a request's repr ('X-Amz-Security-Token': b'...') or a canonical request (name:value).
_TOKEN = re.compile(r"""(x-amz-security-token['"]?\s*:\s*b?['"]?)[^'"\s,}]+""", re.IGNORECASE)
# An exception about a header value quotes the value (http.client: "Invalid header value b'...'").
_HEADER_VALUE = re.compile(r"""(invalid header value\s*)(b?(['"]).*?(?<!\\)\3|\S+)""", re.IGNORECASE)
# Every logger of botocore and urllib3 that can see a request, its headers or an exception about them.
_LOGGERS = (
    "botocore",
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.auth",
    "botocore.httpsession",
    "botocore.awsrequest",
    "botocore.hooks",
    "botocore.retryhandler",
    "botocore.retries.standard",
    "botocore.retries.adaptive",
    "botocore.retries.special",
    "botocore.credentials",
    "botocore.utils",
    "botocore.client",
    "botocore.httpchecksum",
    "boto3",
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.response",
    "urllib3.poolmanager",
    "urllib3.util.retry",
)
_PREFIXES = ("botocore.", "boto3.", "urllib3.")
_lock = threading.Lock()
_secrets: set[str] = set()


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
        elif isinstance(record.args, dict) and record.args:
            record.args = {key: _scrub(arg) for key, arg in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = _scrub_text(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            # Format the traceback once, scrubbed, and drop the live exception so no handler formats it again.
            record.exc_text = _scrub_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = _scrub_text(record.exc_text)
        if record.stack_info:
            record.stack_info = _scrub_text(record.stack_info)
        return True


def _scrub_text(text: str) -> str:
    """Blank known credentials, the session token header and quoted header values in free text."""
    for secret in _known():
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _TOKEN.search(text):
        text = _TOKEN.sub(rf"\1{REDACTED}", text)
    if _HEADER_VALUE.search(text):
        text = _HEADER_VALUE.sub(rf"\1{REDACTED}", text)
    return text


def _known() -> list[str]:
    with _lock:
        return list(_secrets)


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
        scrubbed = _scrub_text(text)
        return scrubbed if scrubbed != text else value
    if isinstance(value, BaseException):
        return _scrub_text(f"{type(value).__name__}: {value}")
    headers = getattr(value, "headers", None)  # a prepared request: its repr shows the headers
    if headers is not None:
        text = str(value)
        scrubbed = _scrub_text(text)
        return scrubbed if scrubbed != text else value
    return value


def register_secrets(values: Iterable[str]) -> None:
    """Remember credentials to blank wherever they appear in a filtered record (tracebacks included).

    Args:
        values: Secret access keys and session tokens; short or empty strings are ignored.
    """
    with _lock:
        _secrets.update(value for value in values if len(value) >= 8)


def install() -> None:
    """Add the filter to every botocore, boto3 and urllib3 logger (the known ones and those created so far)."""
    with _lock:
        existing = [name for name in logging.Logger.manager.loggerDict if name.startswith(_PREFIXES)]
        for name in (*_LOGGERS, *existing):
            target = logging.getLogger(name)
            if not any(isinstance(existing, RedactingFilter) for existing in target.filters):
                target.addFilter(RedactingFilter())
