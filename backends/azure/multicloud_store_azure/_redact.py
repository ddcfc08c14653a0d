"""Keep credentials out of the SDK's log records, tracebacks included, and out of error messages.

azure-core's HTTP logging policy already replaces the ``Authorization`` header, but other records can carry one:
the network trace policy (``logging_enable=True``) prints every header; requests refuses a header value with a
newline in an exception whose text is the whole header (``Bearer <token>``), which azure-core's retry policy and
urllib3 log with their tracebacks; azure-identity and msal log token requests and responses at DEBUG. A filter on
every logger of azure-core, azure-identity, azure-keyvault-secrets, msal, requests and urllib3 rewrites a record's
message and traceback when either contains a bearer token, an ``Authorization`` header, a client secret or token
field, or one of the credential values this process was configured with. Without DEBUG (or the network trace) on,
no such record is created, so the filter costs nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import traceback

__all__ = ["REDACTED", "install", "redact", "register"]

REDACTED = "<redacted by multicloud-store>"

_PATTERNS = (
    # "Bearer eyJ...", "PoP ...", in a header, a repr or an exception message.
    re.compile(r"(\b(?:Bearer|PoP)\s+)[^\s'\",}]+", re.IGNORECASE),
    # 'Authorization': '...', authorization: ..., Authorization=...
    re.compile(r"""(authorization['"]?\s*[:=]\s*['"]?)[^'"\n,}]+""", re.IGNORECASE),
    # Form bodies and JSON of token requests and responses.
    re.compile(
        r"""((?:client_secret|client_assertion|assertion|access_token|refresh_token|id_token)['"]?\s*[:=]\s*['"]?)"""
        r"""[^'"&\s,}]+""",
        re.IGNORECASE,
    ),
)
# The packages whose loggers may see a request, a header or a token.
_PACKAGES = ("azure.core", "azure.identity", "azure.keyvault.secrets", "msal", "requests", "urllib3")

_lock = threading.Lock()
_values: set[str] = set()
_installed = False


def register(*values: str | None) -> None:
    """Remember credential values, so that they are masked wherever they turn up.

    Args:
        *values: Credential values (None and short strings are ignored).
    """
    with _lock:
        # A very short value would mask unrelated text; real credentials are long.
        _values.update(value for value in values if value and len(value) >= 8)


def redact(text: str) -> str:
    """Mask bearer tokens, ``Authorization`` headers, token fields and registered credentials in ``text``.

    Args:
        text: A message, a traceback, a header dump.

    Returns:
        The text with every credential replaced by a marker.
    """
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\1{REDACTED}", text)
    return text


class _RedactingFilter(logging.Filter):
    """Rewrite a record whose message or traceback carries a credential; never drop a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = _RedactingFilter()


def _module_names(package: str) -> list[str]:
    """Every module name of an installed package, found on disk without importing anything."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return [package] if spec is not None else []
    names = [package]
    for location in spec.submodule_search_locations:
        for directory, subdirectories, files in os.walk(location):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            relative = os.path.relpath(directory, location)
            prefix = package if relative == "." else f"{package}.{relative.replace(os.sep, '.')}"
            for file in files:
                if file.endswith(".py"):
                    stem = file[:-3]
                    names.append(prefix if stem == "__init__" else f"{prefix}.{stem}")
    return names


def install() -> None:
    """Put the filter on every logger of the SDK packages, once per process (loggers made later included)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    for package in _PACKAGES:
        for name in _module_names(package):
            target = logging.getLogger(name)
            if _FILTER not in target.filters:
                target.addFilter(_FILTER)
